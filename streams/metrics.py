"""Prometheus metrics of the stream side: consumer lag, offline import rows, a full producer queue.

The stitcher's own series (``cdp_stitch_*``) are defined beside it in streams/stitcher.py, the pull sources' in
streams/source_status.py. Every series is listed in README ("Metrics").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson
from prometheus_client import Counter, Gauge

__all__ = [
    "CONSUMER_LAG",
    "EVENTS_SUPPRESSED",
    "IMPORT_ROWS",
    "PRODUCER_QUEUE_FULL",
    "STATS_INTERVAL_MS",
    "lag_by_topic",
    "lag_reporter",
    "queue_full",
]

log = logging.getLogger("cdp.producer")

CONSUMER_LAG = Gauge(
    "cdp_consumer_lag", "Records behind the end of each topic, per consumer group (from librdkafka)", ["group", "topic"]
)
EVENTS_SUPPRESSED = Counter(
    "cdp_events_suppressed_total",
    "Events dropped because one of their identifiers is suppressed (POST /v1/regulations): answered 200 at the "
    "collector and the webhooks, left out of imports and pull sources",
    ["channel"],
)
IMPORT_ROWS = Counter("cdp_import_rows_total", "Rows of imported files (cdp import, folder drops)", ["outcome"])
PRODUCER_QUEUE_FULL = Counter(
    "cdp_producer_queue_full_total", "Times a producer found its local queue full and waited", ["where"]
)

# How often librdkafka hands a consumer's statistics to lag_reporter: often enough for a dashboard, rarely
# enough that parsing them costs nothing.
STATS_INTERVAL_MS = 5000
QUEUE_FULL_LOG_S = 10.0


def lag_by_topic(stats: str | bytes) -> dict[str, int]:
    """Per topic, the consumer lag summed over this consumer's partitions (librdkafka's ``consumer_lag``; -1,
    unknown, left out) from one statistics document."""
    doc = orjson.loads(stats)
    out: dict[str, int] = {}
    for topic, t in (doc.get("topics") or {}).items():
        lags = [p.get("consumer_lag", -1) for p in (t.get("partitions") or {}).values()]
        known = [lag for lag in lags if isinstance(lag, int) and lag >= 0]
        if known:
            out[topic] = sum(known)
    return out


def lag_reporter(group: str) -> Callable[[str], None]:
    """A ``stats_cb`` for a consumer of ``group``: sets its lag per topic."""

    def report(stats: str) -> None:
        try:
            lags = lag_by_topic(stats)
        except (orjson.JSONDecodeError, AttributeError):
            return
        for topic, lag in lags.items():
            CONSUMER_LAG.labels(group, topic).set(lag)

    return report


_last_logged: dict[str, float] = {}


def queue_full(where: str) -> None:
    """Counts a full producer queue, and says so in the log at most once per ``QUEUE_FULL_LOG_S`` per place: under
    a big import it fills thousands of times, and each wait is the back-pressure working, not a fault."""
    PRODUCER_QUEUE_FULL.labels(where).inc()
    now = time.monotonic()
    if now - _last_logged.get(where, float("-inf")) >= QUEUE_FULL_LOG_S:
        _last_logged[where] = now
        log.warning("producer queue full (%s): waiting for the broker (cdp_producer_queue_full_total)", where)
