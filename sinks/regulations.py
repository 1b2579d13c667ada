"""Carrying out privacy regulations, one after the other, in a thread of the query API process.

A regulation runs its stages (schemas/regulation.py) in order: the subjects' identity clusters are read from
ClickHouse (sinks/erasure.py), the cluster's identifiers are written to the privacy ledger by keyed hash
(streams/privacy.py: the collectors then drop a suppressed person's events, the stitchers replayed ones), the keys
that name the person in compacted topics get tombstones, the rows are erased from every table of the database, the
stitch workers delete the person's identity-graph nodes (streams/node_erasure.py), and the same predicates are
counted again: the residual, 0 everywhere or the regulation failed.
After every stage the state is published to the regulations' log, so GET /v1/regulations/{id} shows progress.

The subjects' values are held in memory only while their regulation waits or runs: no topic and no table keeps
them. A process that stops marks what it had not done as interrupted (submit it again). One that crashed cannot;
each regulation names its owner (host, pid and start of the process that accepted it), and a processor starting on
the same host marks those of an owner that is gone interrupted (a pid no longer running, or its own pid with an
earlier start: a container's process restarted). An owner on another host is left alone: it may be running.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.regulation import RegulationType, Stage, StageStatus
from sinks.clickhouse import ClickHouse
from sinks.erasure import (
    WorkTable,
    count_rows,
    drop_stale_work_tables,
    erase,
    memberships,
    person_tables,
    plan_erasure,
    work_table,
)
from streams.node_erasure import NodeEraser
from streams.privacy import LedgerEntry, PrivacyLedger, RegulationLog, ledger_record
from streams.producer import AsyncProducer
from streams.topics import Topics

__all__ = ["Job", "RegulationProcessor", "abandoned", "dry_run", "ledger_entries", "process_name"]

log = logging.getLogger("cdp.privacy")
Pair = tuple[str, str]
State = dict[str, Any]


@dataclass(frozen=True)
class Job:
    regulation_id: str
    kind: RegulationType
    pairs: Sequence[Pair]  # (id_type, normalised value) of each subject; profile ids as type profile_id


def now_ms() -> int:
    return int(time.time() * 1000)


def process_name(started_ms: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{started_ms}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True


def abandoned(owner: str, me: str) -> bool:
    """Whether the process named ``owner`` is gone, as far as this process (``me``) can tell: only on its host."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3:  # a regulation accepted before owners were recorded
        return False
    (host, pid, _), (my_host, my_pid, _) = parts, me.rsplit(":", 2)
    if host != my_host or not pid.isdigit() or int(pid) <= 0:
        return False
    return owner != me if pid == my_pid else not _running(int(pid))


def ledger_entries(
    kind: RegulationType, regulation_id: str, hashes: Sequence[str], ledger: PrivacyLedger, at_ms: int
) -> list[tuple[str, LedgerEntry]]:
    """What the ledger says of each identifier after this regulation (pure over the ledger's current entries).

    An erasure marks the time before which the identifier's data is gone (what a replay must not bring back); a
    suppression makes this regulation the identifier's group; an ``unsuppress`` lifts the groups of the cluster's
    identifiers, with every identifier that joined them at the collector (streams/privacy.py)."""
    current = {h: ledger.get(h) or LedgerEntry() for h in hashes}
    if kind is RegulationType.UNSUPPRESS:
        groups = {e.group for e in current.values() if e.suppressed and e.group}
        current.update(dict(ledger.in_groups(groups)))
        return [(h, replace(e, suppressed=False, group="", regulation=regulation_id)) for h, e in current.items()]
    out = []
    for h, e in current.items():
        new = replace(e, regulation=regulation_id)
        if kind.erases:
            new = replace(new, erased_at_ms=at_ms)
        if kind.suppresses:  # an identifier suppressed already keeps its group, and so the identifiers that joined it
            new = replace(new, suppressed=True, group=e.group if e.suppressed and e.group else regulation_id)
        out.append((h, new))
    return out


def dry_run(ch: ClickHouse, pairs: Sequence[Pair]) -> dict[str, Any]:
    """What a regulation of these subjects would reach: the clusters and the rows per table, nothing changed."""
    with work_table(ch, pairs) as work:
        cluster = work.expand()
        plan = plan_erasure(ch.database, person_tables(ch), work.name)
        counts = count_rows(ch, plan)
    return {"identifiers": cluster.identifiers, "profiles": cluster.profiles, "counts": counts}


@dataclass
class RegulationProcessor:
    """The part (start/stop) that runs accepted regulations; ``submit`` queues one. ``ch`` is an engine client of
    its own, so an erasure's mutations never hold up the API's queries."""

    ch: ClickHouse
    producer: AsyncProducer
    ledger: PrivacyLedger
    regulations: RegulationLog
    topics: Topics
    nodes: NodeEraser
    done: int = 0
    residual_rounds: int = 3  # erasures of rows written late, before the residual counts as a failure
    settle_s: float = 1.0
    name: str = field(default_factory=lambda: process_name(now_ms()))  # the owner of the regulations it accepts
    _jobs: queue.Queue[Job | None] = field(default_factory=queue.Queue, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="regulations", daemon=True)

    def start(self) -> RegulationProcessor:
        drop_stale_work_tables(self.ch)
        for state in self.regulations.values():
            if state["status"] in (StageStatus.PENDING, StageStatus.RUNNING) and abandoned(
                state.get("owner") or "", self.name
            ):
                self._interrupt(state["id"])
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._jobs.put(None)
        self._thread.join(timeout=30)
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._interrupt(job.regulation_id)

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._stopping.is_set():
                if job is not None:
                    self._interrupt(job.regulation_id)
                return
            try:
                self.process(job)
            except Exception:  # the regulation is failed in its state; the processor goes on with the next
                log.exception("regulation %s failed", job.regulation_id)
            self.done += 1

    def _publish(self, state: State) -> None:
        self.producer.send_sync([self.regulations.record(state)])

    def _interrupt(self, regulation_id: str) -> None:
        state = self.regulations.get(regulation_id)
        if state is None or state["status"] in (StageStatus.FINISHED, StageStatus.FAILED):
            return
        state = {**state, "status": StageStatus.INTERRUPTED.value}
        for stage in state["stages"].values():
            if stage["status"] in (StageStatus.PENDING, StageStatus.RUNNING):
                stage["status"] = StageStatus.INTERRUPTED.value
        self._publish(state)

    def process(self, job: Job) -> State:
        state = self.regulations.get(job.regulation_id)
        if state is None:
            raise LookupError(f"regulation {job.regulation_id} is not in the log")
        state = {
            **state,
            "status": StageStatus.RUNNING.value,
            "stages": {k: dict(v) for k, v in state["stages"].items()},
        }
        try:
            with work_table(self.ch, job.pairs) as work:
                self._stage(state, Stage.CLUSTER, lambda: self._cluster(state, work))
                self._stage(state, Stage.LEDGER, lambda: self._ledger(state, job, work))
                if job.kind.erases:
                    self._stage(state, Stage.TOPICS, lambda: self._tombstones(state, work))
                    self._stage(state, Stage.CLICKHOUSE, lambda: self._erase(state, work))
                    self._stage(state, Stage.IDENTITY, lambda: self._nodes(state, job, work))
                    self._stage(state, Stage.RESIDUAL, lambda: self._residual(state, work))
        except Exception as exc:
            state["status"] = StageStatus.FAILED.value
            state["error"] = type(exc).__name__  # never the message: a database error may quote a value
            self._publish(state)
            raise
        state["status"] = StageStatus.FINISHED.value
        state["finished_at_ms"] = now_ms()
        self._publish(state)
        return state

    def _stage(self, state: State, stage: Stage, run: Callable[[], None]) -> None:
        record = state["stages"][stage.value]
        record.update(status=StageStatus.RUNNING.value, started_at_ms=now_ms())
        self._publish(state)
        try:
            run()
        except Exception:
            record.update(status=StageStatus.FAILED.value, finished_at_ms=now_ms())
            raise
        record.update(status=StageStatus.FINISHED.value, finished_at_ms=now_ms())

    def _cluster(self, state: State, work: WorkTable) -> None:
        cluster = work.expand()
        state["cluster"] = {"identifiers": cluster.identifiers, "profiles": cluster.profiles}

    def _ledger(self, state: State, job: Job, work: WorkTable) -> None:
        hashes = self.ledger.hasher.many(work.node_keys())
        entries = ledger_entries(job.kind, job.regulation_id, hashes, self.ledger, now_ms())
        records = [ledger_record(self.ledger.topic, h, e) for h, e in entries]
        self.producer.send_sync(records)
        for (h, _), (_, _, value) in zip(entries, records, strict=True):  # this process's collector drops the person's
            self.ledger.apply(h, value)  # events from now on, not a poll later
        state["counts"]["ledger"] = len(entries)

    def _tombstones(self, state: State, work: WorkTable) -> None:
        """Tombstones for the keys that name the person in compacted topics: every identifier in the identities
        topic (the serving index then forgets it), every membership in the audience changes; compaction then
        removes the records. Read before the erasure, which removes the rows they are found from."""
        identities = [k for k in work.node_keys() if not k.startswith("profile_id:")]
        members = [f"{a}|{m}" for a, m in memberships(self.ch, work)]
        records: list[tuple[str, bytes | None, bytes | None]] = [
            (self.topics.identities, k.encode(), None) for k in identities
        ]
        records += [(self.topics.audience_changes, k.encode(), None) for k in members]
        self.producer.send_sync(records)
        state["counts"]["topics"] = {
            self.topics.identities: len(identities),
            self.topics.audience_changes: len(members),
        }

    def _erase(self, state: State, work: WorkTable) -> None:
        plan = plan_erasure(self.ch.database, person_tables(self.ch), work.name)
        counts = count_rows(self.ch, plan)
        state["counts"].update(counts)
        erase(self.ch, plan, counts)

    def _nodes(self, state: State, job: Job, work: WorkTable) -> None:
        """The identity graph's nodes of every identifier of the cluster, deleted by the workers that own them."""
        keys = [k for k in work.node_keys() if not k.startswith("profile_id:")]
        state["counts"]["identity"] = self.nodes.erase(self.producer, keys, job.regulation_id)

    def _residual(self, state: State, work: WorkTable) -> None:
        """Count the person's rows again; rows a writer stored after the erasure had read its tables (a rollup step
        or a sink batch that was under way) are erased again, up to ``residual_rounds`` times, a pause apart."""
        plan = plan_erasure(self.ch.database, person_tables(self.ch), work.name)
        late: dict[str, int] = {}
        for round_ in range(self.residual_rounds + 1):
            residual = count_rows(self.ch, plan)
            left = {t: n for t, n in residual.items() if n}
            if not left or round_ == self.residual_rounds:
                break
            for table, n in left.items():
                late[table] = late.get(table, 0) + n
            time.sleep(self.settle_s)  # let a write under way finish before its rows are erased
            erase(self.ch, plan, residual)  # (the tables with rows left only)
        state["residual"] = residual
        state["counts"]["late_rows"] = late
        if left:
            raise RuntimeError(f"rows left after erasure in {', '.join(sorted(left))}")
