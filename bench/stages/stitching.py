"""stitching: events/s through the stitch workers (`cdp worker`, 1 and 2 processes) for three traffic shapes, beside
a raw confluent-kafka consume of the same records (repeated to 100,000 in a scratch topic, so the rate is steady).

Shapes:

* **journeys**: the generator's events in the order it yields them (person by person, so every person's events
  come together and out of time order): the figure earlier versions reported.
* **steady**: many returning people: the journeys of ``steady_people`` people replayed in time order, as a live
  site sees them. Most events find their identifiers in one profile already (the stitcher's fast path).
* **cold**: every event is a new person or a new link, like an import of CRM contacts and their web logins:
  half the events bring a new person with three identifiers, the other half a new cookie of a known user.

Per shape and worker count, on fresh topics: start the workers (stitch-only, ``CDP_WORKER_SINKS=false``), push a
small warm-up through them, then produce the events to the raw channel topics (as the collector writes them) and
time until every event is on the stitched topic or the dead-letter topic (committed records, counted by reading
them), and until the identity graph is quiet (nothing written to the identity messages, identities and node
changelog topics for 2 s). Details per row: fast-path share, identity messages handled per event (the workers'
own totals), identity-message records through Kafka per event, worker peak RSS.

A last row (full mode: 1,000,000 steady events; quick: fewer) is the catch-up after downtime: the events are
produced first, then one worker starts; progress is printed per second, and the longest second without progress
after the first 10 s and the worker's memory over the run are reported.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

import orjson

from bench.context import Context
from bench.core import Result, StageError, register
from bench.data import collector_record, sdk_events
from bench.generator import GeneratorConfig
from bench.stack import (
    OffsetCounter,
    RecordCounter,
    consume_rate,
    cpu_seconds,
    create_topics,
    peak_rss_mb,
    produce_all,
    rss_mb,
)

WARMUP_EVENTS = 200
RAW_CONSUME_RECORDS = 100_000
QUIET_S = 2.0  # nothing written to the graph's topics for this long: it has converged

Records = list[tuple[str, bytes | None, bytes, list[Any]]]  # (channel, key, value, headers) as the collector writes


# ------------------------------------------------------------------------------------------- shapes


def journeys(n: int, seed: int) -> Records:
    """``n`` generator events as it yields them (all channels), as the collector writes them."""
    cfg = GeneratorConfig(people=max(1, n), seed=seed)
    out: Records = []
    for channel, event in sdk_events(cfg, channels=("online", "mobile", "offline")):
        out.append((channel, *collector_record(event, channel)))
        if len(out) >= n:
            break
    return out


def steady(people: int, seed: int, limit: int | None = None) -> Records:
    """The journeys of ``people`` people in time order (at most ``limit`` events)."""
    cfg = GeneratorConfig(people=people, seed=seed)
    events = sorted(sdk_events(cfg, channels=("online", "mobile", "offline")), key=lambda ce: ce[1]["timestamp"])
    if limit is not None:
        events = events[:limit]
    return [(channel, *collector_record(event, channel)) for channel, event in events]


def cold(n: int, tag: str) -> Records:
    """``n`` events, each a new person (user id, e-mail, cookie) or a new cookie of a person seen before."""
    out: Records = []
    for i in range(n):
        person = i // 2
        if i % 2 == 0:
            event: dict[str, Any] = {
                "type": "identify",
                "userId": f"{tag}-u{person}",
                "anonymousId": f"{tag}-c{person}",
                "traits": {"email": f"{tag}-{person}@example.com", "plan": "basic"},
            }
        else:
            event = {"type": "track", "event": "Signed In", "userId": f"{tag}-u{person}", "anonymousId": f"{tag}-x{i}"}
        event["messageId"] = f"{tag}-m{i}"
        event["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + i)) + ".000Z"
        out.append(("online", *collector_record(event, "online")))
    return out


# ------------------------------------------------------------------------------------------ helpers


def _wait_count(counter: RecordCounter, target: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    last = counter.count()
    while last < target and time.monotonic() < deadline:
        time.sleep(0.05)
        last = counter.count()
    return last


def _wait_quiet(counter: OffsetCounter, started: float, timeout: float) -> float:
    """Seconds from ``started`` to the last write to the counted topics, once they have been quiet for QUIET_S."""
    deadline = time.monotonic() + timeout
    last = counter.count()
    changed = time.perf_counter()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = counter.count()
        if now != last:
            last, changed = now, time.perf_counter()
        elif time.perf_counter() - changed >= QUIET_S:
            return changed - started
    raise StageError(f"identity graph still changing after {timeout:.0f} s")


def _raw_consume(ctx: Context, prefix: str, prepared: Records) -> float:
    """The raw consume baseline on the same records, repeated to at least RAW_CONSUME_RECORDS in a scratch topic:
    a few thousand records are read in a couple of fetch round trips, which measures latency, not the rate."""
    topic = f"{prefix}.bench-raw-consume"
    create_topics(ctx.bootstrap, [topic])
    repeat = max(1, -(-RAW_CONSUME_RECORDS // max(1, len(prepared))))
    total = produce_all(ctx.bootstrap, ((topic, k, v, h) for _ in range(repeat) for _, k, v, h in prepared))
    return consume_rate(ctx.bootstrap, [topic], total)[0]


def worker_totals(output: str) -> dict[str, int]:
    """The counts a stopped worker logged (``stitch totals {...}``), summed if it logged several."""
    totals: dict[str, int] = {}
    for raw in re.findall(r"stitch totals (\{[^\n]*\})", output):
        for name, value in orjson.loads(raw).items():
            totals[name] = totals.get(name, 0) + int(value)
    return totals


def _topics(prefix: str) -> dict[str, str]:
    return {
        "stitched": f"{prefix}.events.stitched",
        "deadletter": f"{prefix}.deadletter",
        "ops": f"{prefix}.identity.ops",
        "identities": f"{prefix}.identities",
        "nodes": f"{prefix}-stitch-identity-nodes-changelog",
    }


def _warm_up(ctx: Context, prefix: str, counter: RecordCounter, label: str) -> None:
    warm = []
    for i in range(WARMUP_EVENTS):
        event = {
            "type": "track",
            "event": "Bench Warm-up",
            "anonymousId": f"warm-{ctx.tag}-{i}",
            "messageId": f"warm-{ctx.tag}-{label}-{i}",
        }
        warm.append((f"{prefix}.events.online", *collector_record(event, "online")))
    produce_all(ctx.bootstrap, warm)
    got = _wait_count(counter, WARMUP_EVENTS, 180)
    if got < WARMUP_EVENTS:
        raise StageError(f"warm-up: {got} of {WARMUP_EVENTS} events stitched in 180 s")
    time.sleep(1.0)


def _start_workers(ctx: Context, prefix: str, workers: int, label: str) -> list[Any]:
    procs = [
        ctx.start_cdp(
            "worker",
            f"{label}-w{i}",
            prefix,
            wait=False,
            CDP_WORKER_ID=f"w{i}",
            CDP_WORKER_SINKS="false",
            CDP_LOG_LEVEL="INFO",  # the workers' totals are an INFO line
        )
        for i in range(workers)
    ]
    for proc in procs:
        proc.wait_started()
    return procs


def _per_event(totals: dict[str, int], events: int) -> dict[str, Any]:
    paths = {name: totals.get(name, 0) for name in ("fast", "linked", "protocol")}
    stitched = sum(paths.values())
    return {
        "worker_totals": totals,
        "fast_path_share": paths["fast"] / stitched if stitched else None,
        "linked_in_one_step_share": paths["linked"] / stitched if stitched else None,
        "protocol_share": paths["protocol"] / stitched if stitched else None,
        "messages_handled_per_event": (totals.get("handled", 0) / events) if events else None,
        "messages_sent_per_event": (totals.get("sent", 0) / events) if events else None,
    }


# -------------------------------------------------------------------------------------------- stage


@register
class StitchingStage:
    name = "stitching"
    description = "events/s through the stitch workers (cdp worker x1, x2), shapes journeys/steady/cold, vs raw consume"

    def run(self, ctx: Context) -> list[Result]:
        m = ctx.mode
        shapes: list[tuple[str, Records]] = []
        for shape in m.stitch_shapes:
            ctx.log(f"stitching: preparing the {shape} shape")
            if shape == "journeys":
                shapes.append((shape, journeys(m.stitch_events, m.seed + 13)))
            elif shape == "steady":
                shapes.append((shape, steady(m.steady_people, m.seed + 17)))
            elif shape == "cold":
                shapes.append((shape, cold(m.cold_events, f"cold-{ctx.tag}")))
            else:
                raise StageError(f"unknown stitching shape {shape!r}")
        results: list[Result] = []
        for shape, prepared in shapes:
            raw_rate = _raw_consume(ctx, ctx.prefix(f"stitch-{shape}-raw"), prepared)
            for workers in m.stitch_workers:
                results += self._measure(ctx, shape, prepared, workers, raw_rate)
        if m.catchup_events:
            results.append(self._catch_up(ctx))
        return results

    def _measure(self, ctx: Context, shape: str, prepared: Records, workers: int, raw_rate: float) -> list[Result]:
        m = ctx.mode
        n = len(prepared)
        label = f"stitch-{shape}-{workers}"
        prefix = ctx.prefix(label)
        topics = _topics(prefix)
        records = [(f"{prefix}.events.{channel}", key, value, headers) for channel, key, value, headers in prepared]
        procs = _start_workers(ctx, prefix, workers, label)
        counter = RecordCounter(ctx.bootstrap, [topics["stitched"], topics["deadletter"]])
        graph = OffsetCounter(ctx.bootstrap, [topics["ops"], topics["identities"], topics["nodes"]])
        ops = OffsetCounter(ctx.bootstrap, [topics["ops"]])
        try:
            _warm_up(ctx, prefix, counter, label)
            base, ops_base = counter.count(), ops.count()
            labels = {("worker" if workers == 1 else f"worker {i + 1}"): p.pid for i, p in enumerate(procs)}
            watch = ctx.watch(**labels)
            ctx.log(f"stitching: {n:,} {shape} events through {workers} worker(s)")
            cpu_before = [cpu_seconds(p.pid) or 0.0 for p in procs]
            started = time.perf_counter()
            produce_all(ctx.bootstrap, records)
            produced_s = time.perf_counter() - started
            last = _wait_count(counter, base + n, m.stitch_timeout_s)
            elapsed = time.perf_counter() - started
            if last < base + n:
                raise StageError(f"{shape}, {workers} worker(s): {last - base} of {n} events stitched")
            quiet_s = max(elapsed, _wait_quiet(graph, started, m.stitch_timeout_s))
            peaks = watch.read()
            # Includes the last QUIET_S of idle polling: a small overestimate.
            worker_cpu = sum((cpu_seconds(p.pid) or 0.0) - before for p, before in zip(procs, cpu_before, strict=True))
            ops_records = ops.count() - ops_base  # offsets: includes transaction markers, an upper bound
        finally:
            counter.close()
            graph.close()
            ops.close()
            for proc in procs:
                ctx.stop_cdp(proc)
        totals: dict[str, int] = {}
        for proc in procs:
            for name, value in worker_totals(proc.output()).items():
                totals[name] = totals.get(name, 0) + value
        details: dict[str, Any] = {
            "shape": shape,
            "events": n,
            "workers": workers,
            "seconds_until_stitched": elapsed,
            "seconds_until_quiet": quiet_s,
            "produce_seconds": produced_s,
            "identity_message_offsets_per_event": ops_records / n if n else None,
            "worker_cpu_us_per_event": worker_cpu / n * 1e6 if n else None,
            **_per_event(totals, n + WARMUP_EVENTS),
            "note": "stitch-only workers; counted as committed records on the stitched and dead-letter topics",
        }
        plural = "s" if workers > 1 else ""
        return [
            Result(
                self.name,
                f"{shape}: events stitched, {workers} worker{plural}",
                n / elapsed,
                "events/s",
                raw_rate,
                "raw consume",
                peak_rss_mb=peaks,
                details=details,
            ),
            Result(
                self.name,
                f"{shape}: events until the graph is quiet, {workers} worker{plural}",
                n / quiet_s,
                "events/s",
                raw_rate,
                "raw consume",
                peak_rss_mb=peaks,
                details=details,
            ),
        ]

    def _catch_up(self, ctx: Context) -> Result:
        """A backlog produced first, then one worker: progress per second, stalls, memory over the run."""
        m = ctx.mode
        n = m.catchup_events
        label = "stitch-catchup"
        prefix = ctx.prefix(label)
        topics = _topics(prefix)
        ctx.log(f"stitching: preparing {n:,} steady events for the catch-up")
        people = max(1, n // 42)  # the generator's journeys average about 42 events a person
        prepared = steady(people, m.seed + 19, limit=n)
        while len(prepared) < n:  # top up with later people when the estimate fell short
            people += max(1, (n - len(prepared)) // 40)
            prepared = steady(people, m.seed + 19, limit=n)
        n = len(prepared)
        from bench.stack import prepare_cdp_topics

        prepare_cdp_topics(ctx.bootstrap, prefix)
        counter = RecordCounter(ctx.bootstrap, [topics["stitched"], topics["deadletter"]])
        produce_all(ctx.bootstrap, ((f"{prefix}.events.{c}", k, v, h) for c, k, v, h in prepared))
        del prepared
        raw_rate = consume_rate(ctx.bootstrap, [f"{prefix}.events.{c}" for c in ("online", "mobile", "offline")], n)[0]
        ctx.log(f"stitching: {n:,} events waiting; starting one worker")
        started = time.perf_counter()
        (proc,) = _start_workers(ctx, prefix, 1, label)
        progress: list[tuple[float, int, float | None]] = []  # (seconds, events stitched, worker RSS MiB)
        try:
            done = 0
            deadline = time.monotonic() + m.stitch_timeout_s
            next_tick = time.perf_counter() + 1.0
            while done < n and time.monotonic() < deadline:
                time.sleep(max(0.0, next_tick - time.perf_counter()))
                next_tick += 1.0
                done = counter.count()
                second = round(time.perf_counter() - started, 1)
                progress.append((second, done, rss_mb(proc.pid)))
                ctx.log(f"catch-up: {second:6.1f} s  {done:>9,} of {n:,} stitched")
            elapsed = time.perf_counter() - started
            peak = peak_rss_mb(proc.pid)
        finally:
            counter.close()
            ctx.stop_cdp(proc)
        if done < n:
            raise StageError(f"catch-up: {done} of {n} events stitched in {m.stitch_timeout_s:.0f} s")
        stalls = _longest_stall(progress, after_s=10.0)
        rss = [r for _, _, r in progress if r is not None]
        third = max(1, len(rss) // 3)
        details = {
            "events": n,
            "seconds": elapsed,
            "longest_second_without_progress_after_10_s": stalls,
            "rss_mb_first_third_max": max(rss[:third]) if rss else None,
            "rss_mb_last_third_max": max(rss[-third:]) if rss else None,
            "progress": progress,
            **_per_event(worker_totals(proc.output()), n),
        }
        return Result(
            self.name,
            f"catch-up: {n:,} steady events waiting, 1 worker",
            n / elapsed,
            "events/s",
            raw_rate,
            "raw consume",
            peak_rss_mb={"worker": round(peak, 1)} if peak else {},
            details=details,
        )


def _longest_stall(progress: Iterable[tuple[float, int, float | None]], after_s: float) -> int:
    """The longest run of whole seconds after ``after_s`` in which the count did not grow."""
    longest = run = 0
    previous: int | None = None
    for second, done, _ in progress:
        if previous is not None and second > after_s:
            run = run + 1 if done == previous else 0
            longest = max(longest, run)
        previous = done
    return longest
