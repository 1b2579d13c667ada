"""sink: rows/s of sinks.writer.KafkaSink into chDB beside a raw clickhouse-connect insert of the same rows.

N stitched event records (generator events, enriched as the collector does, with a profile id) are produced to
a topic first; the measuring runs in bench/sink_child.py, a process with its own chDB folder."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator

import orjson

from bench.context import Context
from bench.core import Result, StageError, register
from bench.data import stitched_record
from bench.generator import GeneratorConfig, generate_events, strip_truth
from bench.stack import ROOT, child_env, create_topics, produce_all
from schemas.settings import Settings


def stitched_records(topic: str, rows: int, seed: int) -> Iterator[tuple[str, bytes, bytes]]:
    # ~40 events per person: far more people than needed. The 30 days end today: older events would be past the
    # anonymous profiles' retention, and rows the TTL drops at once would make that view look free.
    start_ms = (int(time.time()) // 86_400 - 29) * 86_400_000
    cfg = GeneratorConfig(people=max(1, rows), seed=seed, start_ms=start_ms, days=30)
    for event in itertools.islice(generate_events(cfg), rows):
        clean, truth = strip_truth(event)
        assert truth is not None
        key, value = stitched_record(clean, truth["channel"], f"profile-{truth['person']}")
        yield topic, key, value


@register
class SinkStage:
    name = "sink"
    description = "rows/s of sinks.writer.KafkaSink into chDB vs a raw clickhouse-connect insert of the same rows"

    def run(self, ctx: Context) -> list[Result]:
        m = ctx.mode
        topic = f"{ctx.prefix('sink')}.events.stitched"
        create_topics(ctx.bootstrap, [topic])
        ctx.log(f"sink: producing {m.sink_rows:,} stitched event records")
        produced = produce_all(ctx.bootstrap, stitched_records(topic, m.sink_rows, m.seed + 11))
        folder = ctx.workdir / "sink-chdb"
        watch = ctx.watch()
        ctx.log("sink: KafkaSink -> chDB, then the raw insert, in a child process")
        cmd = [
            sys.executable,
            "-m",
            "bench.sink_child",
            "--bootstrap",
            ctx.bootstrap,
            "--topic",
            topic,
            "--rows",
            str(produced),
            "--chdb",
            str(folder),
            "--batch-rows",
            str(Settings().sink_batch_rows),  # what `cdp run` uses
            "--flush-s",
            "0.25",
        ]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        watch.add("sink process", proc.pid)
        while proc.poll() is None:
            watch.sample()
            time.sleep(0.2)
        out, err = proc.communicate()
        peaks = watch.read()
        if proc.returncode != 0:
            raise StageError(f"sink child failed ({proc.returncode}): {err.decode(errors='replace')[-1500:]}")
        res = orjson.loads(out.splitlines()[-1])
        # The sink's own peak, taken before the raw baseline loads every record and row into the same process;
        # the process's peak over the whole child stays in the details.
        res["child_peak_rss_mb"] = round(max(peaks.pop("sink process", 0.0), res.pop("rss_mb")), 1)
        peaks["sink process"] = round(res["sink_peak_rss_mb"], 1)
        if res["sink_rows_stored"] != produced:
            raise StageError(f"sink stored {res['sink_rows_stored']} rows, expected {produced}")
        return [
            Result(
                self.name,
                "KafkaSink -> chDB (events + anonymous profiles)",
                res["sink_rows_per_s"],
                "rows/s",
                res["raw_rows_per_s"],
                "raw chDB insert, same records",
                peak_rss_mb=peaks,
                details=res,
            ),
        ]
