"""soak: steady load through a `cdp run` of its own for a long time (``soak_s``: 20 minutes in full mode, 2 in
quick) at half the measured end-to-end capacity, to see whether anything grows: memory, lag, freshness.

The capacity is the end_to_end stage's settle rate from the same run (without it, e.g. ``--only soak``, that
stage runs first). The load is bench.sdk's SDK-like client (journeys of people, 100-event batches to /v1/batch,
retried with the same messageIds) in a thread of this process. Every ``soak_sample_s``: the resident memory
(VmRSS) of `cdp run` (and any child), the broker and this process (the load), and the lag in records of the stitch
workers' consumer group (raw topics, identity messages) and of the sinks' group (their topics). Freshness is
read from the rows at the end: ``ingested_at - received_at`` of every event of the load in `cdp.events_store`,
from the collector's receipt to the row in ClickHouse, p99 per window of receipt and over the whole run.

The people are a bounded population (``soak_people``): once all have come, the journeys start again with the first
(returning customers: the same cookies, user ids and e-mails), as most of a shop's traffic is. State that lives per
identifier by design (the serving index holds every identifier, the identity graph every node) then stops growing
with the population, and memory that still grows is growth the soak is there to find; bytes per identifier are the
read-side stage's figure. The load runs ``soak_warmup_s`` before the ``soak_s`` that are judged: caches, the
identity store's RocksDB block cache and write buffers, the node cache and the engine's code pages fill while the
first people arrive, and the samples of that warm-up are kept in the output but not judged. Memory is flat when the
largest RSS of the last third of the judged samples is within 10 % of the largest of their first third; lag is
bounded when the last third's largest lag is no more than the first third's, or under ``LAG_FLOOR_S`` seconds of
load. Each sample also splits the RSS of `cdp run` into anonymous memory (heap, stacks) and file-backed pages
(mapped libraries), to tell growth of the process's own memory from libraries paged in.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from bench.context import Context
from bench.core import Result, StageError, register
from bench.sdk import SdkLoad, journey_event
from bench.stack import CdpClient, GroupLag, descendants, rss_mb, rss_split_mb
from bench.stages.end_to_end import EndToEndStage

FLAT_MEMORY = 1.10  # the last third's largest RSS over the first third's
LAG_FLOOR_S = 5.0  # a lag below this many seconds of load counts as bounded whatever the first third's
DRAIN_TIMEOUT_S = 300.0


def _capacity(ctx: Context) -> float:
    def settled() -> Result | None:
        return next((r for r in ctx.results if r.stage == "end_to_end" and r.figure.startswith("settled")), None)

    result = settled()
    if result is None:
        ctx.log("soak: no end-to-end capacity measured in this run yet; running end_to_end first")
        ctx.results.extend(EndToEndStage().run(ctx))
        result = settled()
    if result is None or not result.value:
        raise StageError("no end-to-end capacity to take a share of")
    return float(result.value)


def _thirds(values: list[float]) -> tuple[float, float]:
    third = max(1, len(values) // 3)
    return max(values[:third]), max(values[-third:])


@register
class SoakStage:
    name = "soak"
    description = "cdp run under steady load at half its end-to-end capacity: RSS, consumer lag and freshness over time"

    def run(self, ctx: Context) -> list[Result]:
        m = ctx.mode
        capacity = _capacity(ctx)
        rate = capacity * m.soak_capacity_share
        prefix = ctx.prefix("soak")
        proc = ctx.start_cdp("run", "soak", prefix)
        cdp = CdpClient(proc.url, proc.admin_token, proc.write_keys, ctx.bootstrap, prefix, proc.pid, proc.privacy_key)
        tag = f"soak{ctx.tag}"
        raw = [f"{prefix}.events.{c}" for c in ("online", "mobile", "offline")] + [f"{prefix}.identity.ops"]
        sunk = [f"{prefix}.{t}" for t in ("events.stitched", "identities", "merges", "identity.refusals")]
        lags = {
            "stitch": GroupLag(ctx.bootstrap, f"{prefix}-stitch", raw),
            "sink": GroupLag(ctx.bootstrap, f"{prefix}-sink", sunk),
        }
        ctx.log(
            f"soak: {m.soak_warmup_s:.0f} s of warm-up, then {m.soak_s:.0f} s judged, at {rate:,.0f} events/s "
            f"({m.soak_capacity_share:.0%} of {capacity:,.0f}/s), {m.soak_people:,} returning people"
        )
        events = functools.partial(journey_event, tag, people=m.soak_people)
        count = int(rate * (m.soak_warmup_s + m.soak_s))
        load = SdkLoad(cdp.url, cdp.write_keys["online"], count, events, rate, 100, keep_ids=False)
        samples: list[dict[str, Any]] = []
        try:
            load.start()
            started = time.monotonic()
            while load.running:
                samples.append(_sample(ctx, proc.pid, time.monotonic() - started, lags))
                if len(samples) % 6 == 0:
                    ctx.log(f"soak: {samples[-1]}")
                time.sleep(max(0.0, started + len(samples) * m.soak_sample_s - time.monotonic()))
            report = load.wait(60)
            if report.refused or report.gave_up:
                raise StageError(f"the load was refused: {report.refused[:3]}, {report.gave_up} given up")
            stored = _drain(cdp, tag, report.accepted_count)
            windows, p99 = _freshness(cdp, tag, m.soak_sample_s)
        finally:
            load.stop()
            for lag in lags.values():
                lag.close()
            cdp.close()
        judged = [x for x in samples if x["t"] >= m.soak_warmup_s]
        details: dict[str, Any] = {
            "seconds": m.soak_s,
            "warmup_s": m.soak_warmup_s,
            "people": m.soak_people,
            "offered_per_s": rate,
            "capacity_per_s": capacity,
            "load": report.summary(),
            "events_accepted": report.accepted_count,
            "events_stored": stored,
            "samples": samples,
            "freshness_p99_ms_per_window": windows,
        }
        if len(judged) < 3:
            raise StageError(f"only {len(judged)} samples after warm-up: soak_s must be several times soak_sample_s")
        results = [
            Result(
                self.name,
                f"accepted events/s, steady for {m.soak_warmup_s + m.soak_s:.0f} s",
                report.accepted_count / report.seconds,
                "events/s",
                capacity,
                "end-to-end capacity",
                details=details,
            )
        ]
        flat = {}
        for label in judged[0]["rss_mb"]:
            first, last = _thirds([x["rss_mb"].get(label, 0.0) for x in judged])
            flat[label] = last <= first * FLAT_MEMORY
            results.append(
                Result(
                    self.name,
                    f"RSS {label}: largest of the last third (flat: within 10% of the first third's)",
                    last,
                    "MiB",
                    first,
                    "first third's largest",
                    lower_is_better=True,
                    details={"flat": flat[label]},
                )
            )
        bounded = {}
        for name in lags:
            first, last = _thirds([float(x["lag"][name]) for x in judged])
            bounded[name] = last <= max(first, rate * LAG_FLOOR_S)
            results.append(
                Result(
                    self.name,
                    f"{name} consumer lag: largest of the last third",
                    last,
                    "records",
                    first,
                    "first third's largest",
                    lower_is_better=True,
                    details={"bounded": bounded[name]},
                )
            )
        details["memory_flat"] = flat
        details["lag_bounded"] = bounded
        results.append(
            Result(
                self.name,
                f"freshness p99: collector receipt -> row in ClickHouse ({stored:,} events)",
                p99,
                "ms",
                max((w["p99_ms"] for w in windows), default=None),
                "worst window's p99",
                lower_is_better=True,
                details=details,
            )
        )
        return results


def _sample(ctx: Context, pid: int | None, t: float, lags: dict[str, GroupLag]) -> dict[str, Any]:
    pids: dict[str, int | None] = {"cdp": pid, "kafka": ctx.broker_pid, "load": os.getpid()}
    for i, child in enumerate(descendants(pid) if pid else []):
        pids[f"cdp child {i}"] = child
    rss = {label: rss_mb(p) for label, p in pids.items()}
    split = rss_split_mb(pid)
    return {
        "t": round(t, 1),
        "rss_mb": {label: round(v, 1) for label, v in rss.items() if v is not None},
        "cdp_anon_file_mb": [round(v, 1) for v in split] if split else None,
        "lag": {name: lag.lag() for name, lag in lags.items()},
    }


def _drain(cdp: CdpClient, tag: str, accepted: int) -> int:
    """Wait until every accepted event is in `cdp.events_store`; returns how many are."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    query = f"SELECT uniqExact(message_id) FROM cdp.events_store WHERE startsWith(message_id, '{tag}-')"
    while (stored := int(cdp.scalar(query) or 0)) < accepted and time.monotonic() < deadline:
        time.sleep(1.0)
    if stored < accepted:
        raise StageError(f"only {stored:,} of {accepted:,} accepted events stored {DRAIN_TIMEOUT_S:.0f} s after")
    return stored


def _freshness(cdp: CdpClient, tag: str, window_s: float) -> tuple[list[dict[str, Any]], float]:
    """p99 of receipt -> row in ClickHouse per window of receipt, and over the whole run (ms)."""
    mine = f"startsWith(message_id, '{tag}-')"
    delay = "dateDiff('millisecond', received_at, ingested_at)"
    rows = cdp.sql(
        f"SELECT toUnixTimestamp(toStartOfInterval(received_at, INTERVAL {int(window_s)} SECOND)) AS w, count(), "
        f"quantileExact(0.99)({delay}) FROM cdp.events_store WHERE {mine} GROUP BY w ORDER BY w"
    )
    first = rows[0][0] if rows else 0
    windows = [{"t": w - first, "events": n, "p99_ms": float(p)} for w, n, p in rows]
    p99 = cdp.scalar(f"SELECT quantileExact(0.99)({delay}) FROM cdp.events_store WHERE {mine}")
    return windows, float(p99 or 0.0)
