"""collector: /v1/batch events/s accepted and /v1/track p50/p99 at a fixed offered rate, beside a raw
confluent-kafka producer (the collector's own producer settings, the collector's own recorded values)."""

from __future__ import annotations

import math
from typing import Any

from bench.context import Context
from bench.core import Result, StageError, percentile, register
from bench.load import (
    Window,
    batch_load,
    raw_produce_latency,
    raw_produce_throughput,
    run_parallel,
    start_time,
    track_load,
)
from bench.stack import consume_sample, create_topics

TRACK_RATE_PER_PROCESS = 150.0


@register
class CollectorStage:
    name = "collector"
    description = "POST /v1/batch events/s (separate load processes) and /v1/track p50/p99 vs a raw producer"

    def run(self, ctx: Context) -> list[Result]:
        m = ctx.mode
        if ctx.external is not None:
            url, keys, pid = ctx.external.url, ctx.external.write_keys, ctx.external.pid
            prefix = ctx.external.topic_prefix
        else:
            prefix = ctx.prefix("collector")
            # The collector alone: the stitching backlog this load creates must not eat the CPU being measured.
            proc = ctx.start_cdp("collector", "collector", prefix, CDP_COLLECTOR_PROCESSES=str(m.collector_processes))
            url, keys, pid = proc.url, proc.write_keys, proc.pid
        key = keys.get("online")
        if not key:
            raise StageError("no write key for the online channel")
        tag = f"c{ctx.tag}"

        # 1. /v1/batch, closed loop, from separate processes.
        watch = ctx.watch(cdp=pid)
        window = Window(start_time(), m.warmup_s, m.collector_s)
        ctx.log(
            f"collector: {m.load_processes} load processes x {m.connections_per_process} connections, "
            f"{m.batch_size}-event batches, {m.warmup_s:.0f} s warm-up + {m.collector_s:.0f} s"
        )
        jobs = [
            dict(
                url=url,
                write_key=key,
                window=window,
                connections=m.connections_per_process,
                batch_size=m.batch_size,
                seed=m.seed + 7,
                worker=i,
                tag=tag,
            )
            for i in range(m.load_processes)
        ]
        loads = run_parallel(batch_load, jobs)
        batch_peaks = watch.read()
        batch_peaks[f"load x{len(loads)}"] = round(max(r["rss_mb"] for r in loads), 1)
        accepted = sum(r["accepted"] for r in loads)
        errors = _merge_counts(r["errors"] for r in loads)
        if accepted == 0:
            raise StageError(f"no batch was accepted (errors: {errors})")
        events_s = accepted / m.collector_s
        batch_lat = [x for r in loads for x in r["latencies_ms"]]

        # Raw baseline: the same values the collector wrote, produced straight to Kafka.
        samples = consume_sample(ctx.bootstrap, f"{prefix}.events.online", 3000)
        if not samples:
            raise StageError("could not read back the collector's records for the raw baseline")
        raw_topic = f"{prefix}.bench-raw"
        create_topics(ctx.bootstrap, [raw_topic])
        watch_raw = ctx.watch()
        raw_window = Window(start_time(), min(m.warmup_s, 2.0), m.collector_s)
        ctx.log(f"collector: raw producer baseline, {raw_window.duration_s:.0f} s")
        raw = run_parallel(
            raw_produce_throughput, [dict(bootstrap=ctx.bootstrap, topic=raw_topic, samples=samples, window=raw_window)]
        )[0]
        raw_peaks = watch_raw.read()
        raw_events_s = raw["acked_in_window"] / m.collector_s
        batch_peaks["raw producer"] = round(raw["rss_mb"], 1)

        # 2. /v1/track at a fixed offered rate (open loop). One Python HTTP client process sends ~200 requests/s
        # before it becomes the bottleneck itself, so higher rates are split over interleaved processes.
        watch = ctx.watch(cdp=pid)
        window = Window(start_time(), min(m.warmup_s, 2.0), m.track_s)
        senders = max(1, math.ceil(m.track_rate / TRACK_RATE_PER_PROCESS))
        ctx.log(f"collector: /v1/track at {m.track_rate:.0f}/s for {m.track_s:.0f} s from {senders} process(es)")
        tracks = run_parallel(
            track_load,
            [
                dict(
                    url=url,
                    write_key=key,
                    window=window,
                    rate=m.track_rate / senders,
                    seed=m.seed + 7,
                    worker=k,
                    tag=tag + "t",
                    phase_s=k / m.track_rate,
                )
                for k in range(senders)
            ],
        )
        track_peaks = watch.read()
        track_peaks[f"load x{senders}"] = round(max(t["rss_mb"] for t in tracks), 1)
        counts = _merge_counts(t["counts"] for t in tracks)
        offered = counts.get("offered", 0) / m.track_s
        achieved = counts.get("200", 0) / m.track_s
        lat = [x for t in tracks for x in t["latencies_ms"]]

        watch_raw = ctx.watch()
        raw_lat = run_parallel(
            raw_produce_latency,
            [
                dict(
                    bootstrap=ctx.bootstrap,
                    topic=raw_topic,
                    samples=samples,
                    window=Window(start_time(), window.warmup_s, m.track_s),
                    rate=m.track_rate,
                )
            ],
        )[0]
        watch_raw.read()
        track_peaks["raw producer"] = round(raw_lat["rss_mb"], 1)
        raw_ms = raw_lat["latencies_ms"]

        if ctx.external is None:
            ctx.stop_cdp(proc)

        batch_details: dict[str, Any] = {
            "offered": f"closed loop: {m.load_processes} processes x {m.connections_per_process} connections",
            "achieved_events_per_s": events_s,
            "requests_per_s": sum(r["batches_in_window"] for r in loads) / m.collector_s,
            "batch_latency_p50_ms": percentile(batch_lat, 50),
            "batch_latency_p99_ms": percentile(batch_lat, 99),
            "errors": errors,
            "duration_s": m.collector_s,
            "warmup_s": m.warmup_s,
            "raw_producer": {
                "events_per_s": raw_events_s,
                "mean_value_bytes": raw["mean_value_bytes"],
                "errors": raw["errors"],
                "peak_rss_mb": raw_peaks,
            },
        }
        track_details: dict[str, Any] = {
            "offered_per_s": offered,
            "achieved_per_s": achieved,
            "counts": counts,
            "samples": len(lat),
            "raw_producer_samples": len(raw_ms),
            "raw_producer_errors": raw_lat["errors"],
            "latency_from": "scheduled send time (open loop)",
        }
        rate_note = f"offered {offered:,.0f}/s, achieved {achieved:,.0f}/s"
        # The count is ours to tell only for the collector this stage started, not for a running deployment.
        procs = (
            ""
            if ctx.external is not None
            else f", {m.collector_processes} collector process" + ("es" if m.collector_processes > 1 else "")
        )
        return [
            Result(
                self.name,
                f"/v1/batch accepted ({m.batch_size}-event batches{procs})",
                events_s,
                "events/s",
                raw_events_s,
                "raw producer",
                peak_rss_mb=batch_peaks,
                details=batch_details,
            ),
            Result(
                self.name,
                f"/v1/track p50 ({rate_note})",
                percentile(lat, 50),
                "ms",
                percentile(raw_ms, 50),
                "raw produce+ack",
                lower_is_better=True,
                peak_rss_mb=track_peaks,
                details=track_details,
            ),
            Result(
                self.name,
                f"/v1/track p99 ({rate_note})",
                percentile(lat, 99),
                "ms",
                percentile(raw_ms, 99),
                "raw produce+ack",
                lower_is_better=True,
                peak_rss_mb=track_peaks,
                details=track_details,
            ),
        ]


def _merge_counts(dicts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in (d or {}).items():
            out[k] = out.get(k, 0) + int(v)
    return out
