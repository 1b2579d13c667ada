"""Stitch N identifiers through one real `cdp worker` (stitch-only) and report events/s and peak memory.

    python -m bench.identity_scale --identifiers 1000000 [--rate EVENTS_PER_S]

Each event carries a fresh cookie and a fresh device id, and every second event re-uses the previous event's
device, so identifiers merge in pairs of events (2 cookies + 1 device per profile): the graph keeps growing
with new nodes and merges, never settling into already-known ones. Uses its own broker and data folder.

Without --rate every event is produced first (a backlog, as after downtime); with --rate events are produced at
that pace while the worker stitches (live traffic), and the lag (produced - stitched) is reported.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from bench.stack import Broker, CdpProcess, OffsetCounter, RecordCounter, peak_rss_mb, produce_all


def events(n_events: int, run: str):
    for i in range(n_events):
        device = f"{run}-d{i // 2}"
        event = {
            "type": "track",
            "event": "Scale",
            "messageId": f"{run}-{i}",
            "anonymousId": f"{run}-c{i}",
            "context": {"device": {"id": device}},
            "timestamp": "2026-11-01T10:00:00.000Z",
            "receivedAt": "2026-11-01T10:00:00.000Z",
            "channel": "online",
            "sourceId": "bench",
        }
        yield event


def paced(
    records: Iterable[tuple[str, bytes, bytes]], rate: float, sent: list[int]
) -> Iterator[tuple[str, bytes, bytes]]:
    """The records at ``rate`` per second (checked every 100), counting them in ``sent[0]``."""
    started = time.perf_counter()
    for i, record in enumerate(records):
        if rate and i % 100 == 0:
            ahead = i / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        sent[0] = i + 1
        yield record


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--identifiers", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=0.0, help="events/s to produce while stitching (0: all first)")
    p.add_argument("--workdir", default=None, help="keep the broker, data and worker log here (default: a temp dir)")
    p.add_argument("--log-level", default="WARNING", help="the worker's CDP_LOG_LEVEL")
    a = p.parse_args()
    n_events = a.identifiers * 2 // 3  # 1 cookie per event + 1 device per 2 events
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as scratch:
        tmp = a.workdir or scratch
        broker = Broker(Path(tmp) / "kafka").start()
        prefix = f"scale{run}"
        worker = CdpProcess(
            broker.bootstrap, Path(tmp) / "w0", prefix, "worker", CDP_WORKER_SINKS="false", CDP_LOG_LEVEL=a.log_level
        )
        try:
            worker.launch().wait_started()
            time.sleep(5)
            sent = [0]
            records = (
                (f"{prefix}.events.online", e["anonymousId"].encode(), orjson.dumps(e)) for e in events(n_events, run)
            )
            producer = threading.Thread(
                target=produce_all, args=(broker.bootstrap, paced(records, a.rate, sent)), daemon=True
            )
            producer.start()
            stitched = RecordCounter(broker.bootstrap, [f"{prefix}.events.stitched"])
            peak, started, last, max_lag = 0.0, time.perf_counter(), 0, 0
            while True:
                done = stitched.count()
                peak = max(peak, peak_rss_mb(worker.pid) or 0.0)
                max_lag = max(max_lag, sent[0] - done)
                if done != last:
                    print(
                        f"  {time.perf_counter() - started:7.1f} s  {done:>9,} events stitched  "
                        f"produced {sent[0]:>9,}  rss {peak:.0f} MiB",
                        flush=True,
                    )
                    last = done
                if done >= n_events:
                    break
                time.sleep(5)
            produced = sent[0]
            elapsed = time.perf_counter() - started
            stitched.close()
            ops_counter = OffsetCounter(broker.bootstrap, [f"{prefix}.identity.ops"])
            ops = ops_counter.count()  # offsets: transaction markers included, an upper bound
            ops_counter.close()
            print(
                f"identifiers {a.identifiers:,} in {produced:,} events ("
                + (f"produced at {a.rate:,.0f}/s, max lag {max_lag:,} events); " if a.rate else "produced first); ")
                + f"stitched in {elapsed:.1f} s = {produced / elapsed:,.0f} events/s, "
                f"{a.identifiers / elapsed:,.0f} identifiers/s; at most {ops:,} identity-message records; "
                f"worker peak RSS {peak:.0f} MiB"
            )
        finally:
            # Stop the worker while its broker is still up (a worker that lost its broker is slow to stop).
            worker.stop(signal.SIGKILL)
            broker.stop()


if __name__ == "__main__":
    main()
