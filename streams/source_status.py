"""Status of the pull sources: state, lag, last error, rows today; for `cdp sources list` and /metrics.

Each process that runs a source (the worker for database and folder sources, every collector process for
webhooks) counts in memory (:class:`SourceStats`, also Prometheus metrics), and a :class:`StatusPublisher`
writes a record per source every few seconds to a compacted topic, keyed by source and reporting process.
Reporters are named per process run, so the records of today's earlier runs stay beside the current one:
rows today is the sum of today's records, across restarts and processes (:func:`summarise`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import orjson
from confluent_kafka import Message
from prometheus_client import Counter, Gauge

from streams.follow import TopicFollower
from streams.producer import AsyncProducer

log = logging.getLogger(__name__)

ROWS = Counter("cdp_source_rows_total", "Rows or deliveries a pull source turned into events", ["source", "kind"])
ERRORS = Counter("cdp_source_errors_total", "Rows, files or deliveries a pull source could not take", ["source"])
LAG = Gauge("cdp_source_lag", "Records (database) or files (folder) waiting to be read", ["source"])
UP = Gauge("cdp_source_up", "1 while the source runs without error", ["source"])
FRESH_S = 30.0  # a record older than this comes from a process that stopped


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def reporter_name(role: str) -> str:
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{int(time.time())}"


@dataclass(frozen=True)
class SourceStatus:
    source: str
    kind: str
    reporter: str
    state: str
    lag: int | None = None
    last_error: str | None = None
    last_error_at_ms: int | None = None
    rows_today: int = 0
    day: str = ""
    updated_at_ms: int = 0


class SourceStats:
    """This process's counts per source; thread-safe (sources run in threads, webhooks on the event loop)."""

    def __init__(self, reporter: str) -> None:
        self.reporter = reporter
        self._lock = threading.Lock()
        self._status: dict[str, SourceStatus] = {}

    def _get(self, source: str, kind: str) -> SourceStatus:
        status = self._status.get(source)
        day = today()
        if status is None:
            status = SourceStatus(source, kind, self.reporter, "starting", day=day)
        elif status.day != day:
            status = replace(status, rows_today=0, day=day)
        return status

    def rows(self, source: str, kind: str, n: int) -> None:
        if n <= 0:
            return
        ROWS.labels(source, kind).inc(n)
        with self._lock:
            s = self._get(source, kind)
            self._status[source] = replace(s, rows_today=s.rows_today + n)

    def error(self, source: str, kind: str, message: str) -> None:
        ERRORS.labels(source).inc()
        with self._lock:
            s = self._get(source, kind)
            self._status[source] = replace(s, last_error=message[:500], last_error_at_ms=int(time.time() * 1000))

    def state(self, source: str, kind: str, state: str, lag: int | None = None) -> None:
        UP.labels(source).set(1 if state == "running" else 0)
        if lag is not None:
            LAG.labels(source).set(lag)
        with self._lock:
            s = self._get(source, kind)
            self._status[source] = replace(s, state=state, lag=lag if lag is not None else s.lag)

    def snapshot(self) -> list[SourceStatus]:
        now_ms = int(time.time() * 1000)
        with self._lock:
            self._status = {k: self._get(s.source, s.kind) for k, s in self._status.items()}
            return [replace(s, updated_at_ms=now_ms) for s in self._status.values()]


class StatusPublisher:
    """Part: writes this process's source status to the status topic every ``interval_s`` and once at stop."""

    _producer: AsyncProducer

    def __init__(self, stats: SourceStats, bootstrap: str, topic: str, interval_s: float) -> None:
        self._stats, self._bootstrap, self._topic, self._interval = stats, bootstrap, topic, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="source-status", daemon=True)

    def start(self) -> StatusPublisher:
        # A producer of its own: a flush of the process's shared one would wait for the collector's events too
        # (for as long as the broker is away).
        self._producer = AsyncProducer(self._bootstrap)
        self._thread.start()
        return self

    def publish(self, final: bool = False) -> None:
        records = []
        for s in self._stats.snapshot():
            if final:
                s = replace(s, state="stopped")
            records.append((self._topic, f"{s.source}/{s.reporter}".encode(), orjson.dumps(asdict(s))))
        if records:
            self._producer.send_sync(records, timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.publish()
            except Exception as exc:  # status is best effort: the sources themselves go on
                log.warning("could not publish source status: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.publish(final=True)
        except Exception as exc:
            log.warning("could not publish the final source status: %s", exc)
        self._producer.close(timeout=5)


class StatusBoard:
    """The status topic, read into memory (for `cdp sources list`)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._records: dict[str, SourceStatus] = {}
        self._lock = threading.Lock()
        self._follower = TopicFollower(bootstrap, {topic: self._apply}, name="source-status")

    def _apply(self, msg: Message) -> None:
        key = (msg.key() or b"").decode()
        value = msg.value()
        with self._lock:
            if value is None:
                self._records.pop(key, None)
            else:
                self._records[key] = SourceStatus(**orjson.loads(value))

    def start(self, wait: float = 30.0) -> StatusBoard:
        self._follower.start(wait)
        return self

    def records(self) -> list[SourceStatus]:
        with self._lock:
            return list(self._records.values())

    def stop(self) -> None:
        self._follower.stop()


def summarise(records: list[SourceStatus], source: str, now_ms: int, day: str) -> SourceStatus | None:
    """One status of a source from all its reporters: running if a live reporter runs it, rows of today summed
    over every run, the largest lag of the live ones, the latest error of today."""
    mine = [r for r in records if r.source == source]
    if not mine:
        return None
    live = [r for r in mine if now_ms - r.updated_at_ms <= FRESH_S * 1000 and r.state != "stopped"]
    newest = max(mine, key=lambda r: r.updated_at_ms)
    errors = [r for r in mine if r.last_error and r.day == day]
    latest_error = max(errors, key=lambda r: r.last_error_at_ms or 0) if errors else None
    states = {r.state for r in live}
    state = (
        "running"
        if states == {"running"}
        else next((s for s in ("failed", "paused", "missing") if s in states), None)
        or (sorted(states)[0] if states else "stopped")
    )
    lags = [r.lag for r in live if r.lag is not None]
    return SourceStatus(
        source,
        newest.kind,
        ",".join(sorted(r.reporter for r in live)),
        state,
        max(lags) if lags else None,
        latest_error.last_error if latest_error else None,
        latest_error.last_error_at_ms if latest_error else None,
        sum(r.rows_today for r in mine if r.day == day),
        day,
        newest.updated_at_ms,
    )
