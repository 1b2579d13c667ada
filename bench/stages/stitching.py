"""stitching: events/s through the Faust stitching agents (`cdp worker` processes) with 1 and 2 workers, beside
a raw confluent-kafka consume of the same records (repeated to 100,000 in a scratch topic, so the rate is steady).

Per worker count, on fresh topics: start the workers, push a small warm-up through them (so group joins and
rebalances are over), then produce N generator events (as the collector writes them) to the raw channel topics
and time until the stitched topic (plus the dead-letter topic) has N more records, read from end offsets.

Links keep propagating between identifier nodes after an event is out on the stitched topic, so a second row
per worker count runs until the identity-ops topic has been quiet for 2 s (the graph converged).

Workers run stitch-only (`CDP_WORKER_SINKS=false`), so the figure is the identity graph's own speed; the
stitched topic is counted, not ClickHouse rows.
"""

from __future__ import annotations

import time
from typing import Any

from bench.context import Context
from bench.core import Result, StageError, register
from bench.data import collector_record, sdk_events
from bench.generator import GeneratorConfig
from bench.stack import OffsetCounter, consume_rate, create_topics, produce_all

WARMUP_EVENTS = 200
RAW_CONSUME_RECORDS = 100_000
QUIET_S = 2.0  # no identity message for this long: the graph has converged


def _records(n: int, seed: int) -> list[tuple[str, bytes | None, bytes]]:
    """(channel, key, value) of ``n`` generator events as the collector writes them (all channels)."""
    cfg = GeneratorConfig(people=max(1, n), seed=seed)
    out: list[tuple[str, bytes | None, bytes]] = []
    for channel, event in sdk_events(cfg, channels=("online", "mobile", "offline")):
        key, value = collector_record(event, channel)
        out.append((channel, key, value))
        if len(out) >= n:
            break
    return out


def _wait_count(
    counter: OffsetCounter,
    target: int,
    timeout: float,
    series: list[tuple[float, int]] | None = None,
    started: float | None = None,
) -> int:
    deadline = time.monotonic() + timeout
    last = counter.count()
    while last < target and time.monotonic() < deadline:
        time.sleep(0.1)
        last = counter.count()
        if series is not None and started is not None:
            series.append((round(time.perf_counter() - started, 2), last))
    return last


def _wait_quiet(counter: OffsetCounter, started: float, timeout: float) -> tuple[float, int]:
    """(seconds from ``started`` to the last growth of the counted topics, their count) once they have not
    grown for QUIET_S."""
    deadline = time.monotonic() + timeout
    last = counter.count()
    changed = time.perf_counter()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = counter.count()
        if now != last:
            last, changed = now, time.perf_counter()
        elif time.perf_counter() - changed >= QUIET_S:
            return changed - started, last
    raise StageError(f"identity messages still flowing after {timeout:.0f} s")


def _raw_consume(ctx: Context, prefix: str, prepared: list[tuple[str, bytes | None, bytes]]) -> tuple[float, int]:
    """The raw consume baseline on the same records, repeated to at least RAW_CONSUME_RECORDS in a scratch topic:
    a few thousand records are read in a couple of fetch round trips, which measures latency, not the rate."""
    topic = f"{prefix}.bench-raw-consume"
    create_topics(ctx.bootstrap, [topic])
    repeat = max(1, -(-RAW_CONSUME_RECORDS // max(1, len(prepared))))
    total = produce_all(ctx.bootstrap, ((topic, k, v) for _ in range(repeat) for _, k, v in prepared))
    return consume_rate(ctx.bootstrap, [topic], total)


@register
class StitchingStage:
    name = "stitching"
    description = "events/s through the Faust stitching agents (cdp worker x1, x2) vs a raw consume"

    def run(self, ctx: Context) -> list[Result]:
        m = ctx.mode
        results: list[Result] = []
        ctx.log(f"stitching: preparing {m.stitch_events:,} events")
        prepared = _records(m.stitch_events, m.seed + 13)
        n = len(prepared)
        for workers in m.stitch_workers:
            prefix = ctx.prefix(f"stitch{workers}")
            records = [(f"{prefix}.events.{channel}", key, value) for channel, key, value in prepared]
            procs = [
                ctx.start_cdp(
                    "worker",
                    f"stitch{workers}-w{i}",
                    prefix,
                    wait=False,
                    CDP_WORKER_ID=f"w{i}",
                    CDP_WORKER_SINKS="false",
                )
                for i in range(workers)
            ]
            for proc in procs:
                proc.wait_started()
            counter = OffsetCounter(ctx.bootstrap, [f"{prefix}.events.stitched", f"{prefix}.deadletter"])
            ops = OffsetCounter(ctx.bootstrap, [f"{prefix}.identity.ops"])
            try:
                warm = []
                for i in range(WARMUP_EVENTS):
                    event = {
                        "type": "track",
                        "event": "Bench Warm-up",
                        "anonymousId": f"warm-{ctx.tag}-{i}",
                        "messageId": f"warm-{ctx.tag}-{workers}-{i}",
                    }
                    key, value = collector_record(event, "online")
                    warm.append((f"{prefix}.events.online", key, value))
                produce_all(ctx.bootstrap, warm)
                ctx.log(f"stitching: warming up {workers} worker(s)")
                base = _wait_count(counter, WARMUP_EVENTS, 180)
                if base < WARMUP_EVENTS:
                    raise StageError(f"warm-up: {base} of {WARMUP_EVENTS} events stitched in 180 s")
                time.sleep(1.0)
                base = counter.count()
                ops_base = ops.count()
                labels = {("worker" if workers == 1 else f"worker {i + 1}"): p.pid for i, p in enumerate(procs)}
                watch = ctx.watch(**labels)
                ctx.log(f"stitching: {n:,} events through {workers} worker(s)")
                started = time.perf_counter()
                produce_all(ctx.bootstrap, records)
                produced_s = time.perf_counter() - started
                series: list[tuple[float, int]] = []
                last = _wait_count(counter, base + n, m.stitch_timeout_s, series, started)
                elapsed = time.perf_counter() - started
                if last < base + n:
                    raise StageError(
                        f"{workers} worker(s): {last - base} of {n} events stitched in {m.stitch_timeout_s:.0f} s"
                    )
                # Links keep propagating (Propose/Offer between identifier nodes) after the events are out.
                quiet_s, ops_messages = _wait_quiet(ops, started, m.stitch_timeout_s)
                peaks = watch.read()
                ops_messages -= ops_base
            finally:
                counter.close()
                ops.close()
                for proc in procs:
                    ctx.stop_cdp(proc)
            raw_rate, raw_got = _raw_consume(ctx, prefix, prepared)
            details: dict[str, Any] = {
                "events": n,
                "workers": workers,
                "seconds": elapsed,
                "produce_seconds": produced_s,
                "stitched_plus_deadletter": last - base,
                "seconds_until_identity_graph_quiet": quiet_s,
                "identity_messages": ops_messages,
                "identity_messages_per_event": ops_messages / n if n else None,
                "raw_consumed": raw_got,
                "progress": series[:: max(1, len(series) // 50)],
                "note": "workers run stitch-only (CDP_WORKER_SINKS=false); counted on the stitched topic",
            }
            results.append(
                Result(
                    self.name,
                    f"events stitched, {workers} worker process{'es' if workers > 1 else ''}",
                    n / elapsed,
                    "events/s",
                    raw_rate,
                    "raw consume",
                    peak_rss_mb=peaks,
                    details=details,
                )
            )
            results.append(
                Result(
                    self.name,
                    f"events until the identity graph is quiet, {workers} worker{'s' if workers > 1 else ''}",
                    n / quiet_s if quiet_s else None,
                    "events/s",
                    raw_rate,
                    "raw consume",
                    peak_rss_mb=peaks,
                    details=details,
                )
            )
        return results
