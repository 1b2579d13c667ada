"""What a stage gets: the mode's knobs, the broker, a work folder, and helpers that start `cdp` processes (all
stopped by the runner at the end, whatever happened) and watch their peak memory."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.core import Mode, Result
from bench.metrics_scrape import FamilyMove, family_moves, moved_families, moved_summary, scrape
from bench.stack import CdpClient, CdpProcess, PeakWatch, prepare_cdp_topics


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Context:
    mode: Mode
    workdir: Path
    bootstrap: str
    broker_pid: int | None = None
    external: CdpClient | None = None  # a running `cdp run` given by --url
    log: Callable[[str], None] = _log
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    results: list[Result] = field(default_factory=list)  # of the stages run so far (a later stage may build on them)
    _processes: list[CdpProcess] = field(default_factory=list)
    _pipeline: CdpClient | None = None
    _pipeline_proc: CdpProcess | None = None
    _prepared: set[str] = field(default_factory=set)
    _metrics_before: dict[str, float] | None = None  # the shared pipeline's /metrics when it started
    _scraped_at_start: dict[int, dict[str, float]] = field(default_factory=dict)  # per id() of a served process
    metrics_moved: dict[str, dict[str, float]] = field(default_factory=dict)  # per stage {family: delta}, after close()
    # Every stitch worker of an install needs the install's profile id key: the processes of a bench run, each with a
    # data folder of its own, would otherwise generate one each (streams/profile_scheme.py refuses the second).
    profile_key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def prefix(self, stage: str) -> str:
        """A fresh topic prefix (and so Faust app id and consumer groups) per use: stages never see each
        other's backlog."""
        return f"bench-{self.tag}-{stage}"

    def start_cdp(self, parts: str, name: str, topic_prefix: str, wait: bool = True, **env: str) -> CdpProcess:
        """Start `cdp PARTS` with its own data folder `workdir/NAME`; the runner stops it at the end. With
        ``wait=False`` call ``proc.wait_started()`` yourself (to start several side by side)."""
        if topic_prefix not in self._prepared:
            prepare_cdp_topics(self.bootstrap, topic_prefix)
            self._prepared.add(topic_prefix)
        env = {"CDP_PROFILE_KEY": self.profile_key, **env}
        proc = CdpProcess(self.bootstrap, self.workdir / name, topic_prefix, parts, **env)
        self._processes.append(proc)
        proc.launch()
        if wait:
            try:
                proc.wait_started()
            except RuntimeError as exc:  # exited during start-up: one more try, then give up
                self.log(f"cdp {parts} ({name}) failed to start, retrying once: {str(exc).splitlines()[0]}")
                self.stop_cdp(proc)
                self._processes.remove(proc)
                proc = CdpProcess(self.bootstrap, self.workdir / name, topic_prefix, parts, **env)
                self._processes.append(proc)
                proc.launch().wait_started()
            if parts in ("run", "collector", "api"):
                proc.wait_ready()
                self._scraped_at_start[id(proc)] = scrape(proc.url)
        return proc

    def stop_cdp(self, proc: CdpProcess) -> None:
        before = self._scraped_at_start.pop(id(proc), None)
        if before is not None:
            moves = self._log_moves(f"cdp {proc.parts} ({proc.data_dir.name})", before, proc.url)
            if proc is self._pipeline_proc:
                self.metrics_moved = moved_families(moves)
        code = proc.stop()
        if code not in (0, None):
            self.log(f"cdp {proc.parts} ({proc.data_dir.name}) exited with {code}; log: {proc.log_path}")

    def pipeline(self) -> CdpClient:
        """The whole pipeline (`cdp run`: collector, stitching, sinks, query API), shared by the stages that
        need it end to end; the one given by --url when there is one."""
        if self.external is not None:
            if self._metrics_before is None:
                self._metrics_before = scrape(self.external.url)
            return self.external
        if self._pipeline is None:
            prefix = self.prefix("pipeline")
            proc = self.start_cdp("run", "pipeline", prefix)
            self._pipeline_proc = proc
            self._pipeline = CdpClient(
                proc.url, proc.admin_token, proc.write_keys, self.bootstrap, prefix, proc.pid, proc.privacy_key
            )
            self._metrics_before = self._scraped_at_start[id(proc)]
        return self._pipeline

    def pipeline_moves(self, later: list[dict[str, float]]) -> list[FamilyMove]:
        """The README's metric families of the shared pipeline, from its scrape when it started to ``later``
        scrapes of it."""
        self.pipeline()
        assert self._metrics_before is not None
        return family_moves(self._metrics_before, later)

    def _log_moves(self, what: str, before: dict[str, float], url: str) -> list[FamilyMove]:
        """The README's metric families of one process since its first scrape, logged on one line."""
        moves = family_moves(before, [scrape(url)])
        if any(m.series for m in moves):
            self.log(f"metrics of {what} since it started: {moved_summary(moves)}")
        else:
            self.log(f"metrics of {what}: /metrics did not answer")
        return moves

    def watch(self, **pids: int | None) -> PeakWatch:
        """Peak RSS of the named processes (and the broker, as `kafka`) from now on."""
        return PeakWatch({**pids, "kafka": self.broker_pid})

    def close(self) -> None:
        if self.external is not None and self._metrics_before is not None:
            self.metrics_moved = moved_families(
                self._log_moves("the deployment", self._metrics_before, self.external.url)
            )
        if self._pipeline is not None:
            self._pipeline.close()
        for proc in reversed(self._processes):
            try:
                self.stop_cdp(proc)
            except Exception as exc:  # keep stopping the others
                self.log(f"could not stop cdp {proc.parts}: {exc}")
        self._processes.clear()
