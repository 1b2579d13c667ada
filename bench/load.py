"""Load processes. Each function runs in its own process (spawned by :func:`run_parallel`), so the measuring
client never starves the server of CPU on the same event loop, and reports what it measured plus its own
peak RSS.

Timing: every process gets the same wall-clock ``start_at``; it warms up for ``warmup_s`` and counts only what
completes (or, for latencies, what was scheduled) in ``[start_at + warmup_s, start_at + warmup_s +
duration_s)``. Rates are counts in that window divided by ``duration_s``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bench.stack import self_peak_rss_mb


@dataclass(frozen=True)
class Window:
    start_at: float  # wall clock (time.time())
    warmup_s: float
    duration_s: float

    @property
    def begin(self) -> float:
        return self.start_at + self.warmup_s

    @property
    def end(self) -> float:
        return self.begin + self.duration_s

    def contains(self, t: float) -> bool:
        return self.begin <= t < self.end


def run_parallel(fn: Callable[..., dict[str, Any]], jobs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``fn(**job)`` for each job in its own spawned process; results in job order."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=len(jobs), mp_context=ctx) as pool:
        futures = [pool.submit(fn, **job) for job in jobs]
        return [f.result() for f in futures]


def start_time(delay: float = 3.0) -> float:
    """A common start a little ahead, so every spawned process has imported its modules by then."""
    return time.time() + delay


# ------------------------------------------------------------------------------ collector: /v1/batch


def batch_load(
    url: str,
    write_key: str,
    window: Window,
    connections: int,
    batch_size: int,
    seed: int,
    worker: int,
    tag: str,
    pool_size: int = 3000,
) -> dict[str, Any]:
    """Closed loop: ``connections`` concurrent clients each post 100-event batches back to back."""
    from bench.data import event_pool

    pool = event_pool(seed, pool_size, first_person=worker * 10_000)
    return asyncio.run(_batch_load(url, write_key, window, connections, batch_size, pool, f"{tag}-{worker}"))


async def _batch_load(
    url: str, write_key: str, window: Window, connections: int, batch_size: int, pool: list[dict[str, Any]], tag: str
) -> dict[str, Any]:
    import httpx

    stats: dict[str, Any] = {
        "accepted": 0,
        "requests": 0,
        "batches_in_window": 0,
        "errors": Counter(),
        "latencies_ms": [],
    }
    seq = 0

    def body() -> bytes:
        nonlocal seq
        batch = []
        for _ in range(batch_size):
            event = dict(pool[seq % len(pool)])
            event["messageId"] = f"{tag}-{seq}"
            batch.append(event)
            seq += 1
        return orjson.dumps({"batch": batch})

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        auth=(write_key, ""), timeout=30, limits=limits, headers={"content-type": "application/json"}
    ) as client:
        await asyncio.sleep(max(0.0, window.start_at - time.time()))

        async def loop() -> None:
            while time.time() < window.end:
                payload = body()
                started = time.perf_counter()
                try:
                    r = await client.post(f"{url}/v1/batch", content=payload)
                except Exception as exc:
                    stats["errors"][type(exc).__name__] += 1
                    continue
                done = time.time()
                stats["requests"] += 1
                if r.status_code != 200:
                    stats["errors"][str(r.status_code)] += 1
                    continue
                if window.contains(done):
                    stats["accepted"] += int(r.json().get("accepted", 0))
                    stats["batches_in_window"] += 1
                    stats["latencies_ms"].append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(loop() for _ in range(connections)))
    stats["errors"] = dict(stats["errors"])
    stats["rss_mb"] = self_peak_rss_mb()
    return stats


# ------------------------------------------------------------------------- fixed-rate single events

MAX_IN_FLIGHT = 64


def track_load(
    url: str,
    write_key: str,
    window: Window,
    rate: float,
    seed: int,
    worker: int,
    tag: str,
    first_person: int | None = None,
    pool_size: int = 2000,
    phase_s: float = 0.0,
) -> dict[str, Any]:
    """Open loop: one /v1/track request every ``1/rate`` s whatever the answers; latency is measured from the
    scheduled send time, so a slow server cannot hide its queueing (no coordinated omission)."""
    from bench.data import event_pool

    first = worker * 10_000 if first_person is None else first_person
    pool = [e for e in event_pool(seed, pool_size, first_person=first) if e.get("type") == "track"]
    return asyncio.run(_track_load(url, write_key, window, rate, pool, f"{tag}-{worker}", phase_s))


async def _track_load(
    url: str, write_key: str, window: Window, rate: float, pool: list[dict[str, Any]], tag: str, phase_s: float = 0.0
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    counts: Counter[str] = Counter()
    tasks: set[asyncio.Task[None]] = set()

    # Requests wait for a slot here, not in httpcore's pool: its queue is scanned per scheduling step, so a few
    # thousand queued requests (a server, or this process, falling behind) turn the client into the bottleneck.
    # Latency still counts from the scheduled time, so the wait for a slot is in the figure.
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    async with httpx.AsyncClient(
        auth=(write_key, ""),
        timeout=30,
        limits=httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT),
    ) as client:

        async def send(i: int, scheduled: float) -> None:
            event = dict(pool[i % len(pool)])
            event["messageId"] = f"{tag}-{i}"
            in_window = window.contains(scheduled)
            try:
                async with slots:
                    r = await client.post(
                        f"{url}/v1/track", content=orjson.dumps(event), headers={"content-type": "application/json"}
                    )
                status = str(r.status_code)
            except Exception as exc:
                status = type(exc).__name__
            if in_window:
                counts["offered"] += 1
                counts[status] += 1
                if status == "200":
                    latencies.append((time.time() - scheduled) * 1000)

        i = 0
        while True:
            scheduled = window.start_at + phase_s + i / rate
            if scheduled >= window.end:
                break
            delay = scheduled - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(i, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.gather(*tasks)
    return {"latencies_ms": latencies, "counts": dict(counts), "rss_mb": self_peak_rss_mb()}


# ------------------------------------------------------------------------------ raw producer baseline


def raw_produce_throughput(
    bootstrap: str, topic: str, samples: list[tuple[bytes | None, bytes]], window: Window
) -> dict[str, Any]:
    """The raw limit of the collector: one confluent-kafka producer with the collector's own settings
    (acks=all, idempotent, lz4, linger 5 ms) producing the collector's recorded values back to back."""
    from confluent_kafka import Producer

    from streams.producer import producer_config

    acked = {"window": 0, "all": 0, "errors": 0}

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            acked["errors"] += 1
            return
        acked["all"] += 1
        if window.contains(time.time()):
            acked["window"] += 1

    producer = Producer(producer_config(bootstrap, on_delivery=on_delivery))
    time.sleep(max(0.0, window.start_at - time.time()))
    n = 0
    size = 0
    while time.time() < window.end:
        for key, value in samples:
            while True:
                try:
                    producer.produce(topic, value=value, key=key)
                    break
                except BufferError:
                    producer.poll(0.005)
            n += 1
            size += len(value)
            if n % 200 == 0:
                producer.poll(0)
                if time.time() >= window.end:
                    break
    producer.flush(60)
    return {
        "acked_in_window": acked["window"],
        "produced": n,
        "errors": acked["errors"],
        "mean_value_bytes": size / n if n else 0,
        "rss_mb": self_peak_rss_mb(),
    }


def raw_produce_latency(
    bootstrap: str, topic: str, samples: list[tuple[bytes | None, bytes]], window: Window, rate: float
) -> dict[str, Any]:
    """Produce one record every ``1/rate`` s and time each until the broker acknowledged it (acks=all): the
    raw floor under the collector's single-event latency, with the collector's producer settings."""
    from confluent_kafka import Producer

    from streams.producer import producer_config

    latencies: list[float] = []
    errors = 0
    producer = Producer(producer_config(bootstrap))

    def make_cb(scheduled: float) -> Callable[[Any, Any], None]:
        def cb(err: Any, _msg: Any) -> None:
            nonlocal errors
            if err is not None:
                errors += 1
            elif window.contains(scheduled):
                latencies.append((time.time() - scheduled) * 1000)

        return cb

    i = 0
    while True:
        scheduled = window.start_at + i / rate
        if scheduled >= window.end:
            break
        now = time.time()
        if now < scheduled:
            producer.poll(scheduled - now)
            continue
        key, value = samples[i % len(samples)]
        producer.produce(topic, value=value, key=key, on_delivery=make_cb(scheduled))
        producer.poll(0)
        i += 1
    producer.flush(30)
    return {"latencies_ms": latencies, "errors": errors, "rss_mb": self_peak_rss_mb()}
