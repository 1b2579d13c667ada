"""The latest events of every source and the latest refused ones, read from the end of the raw and dead-letter
topics while someone watches (the console's Live events page, a debugger like Segment's).

Why Kafka and not ClickHouse: an event shows here as soon as the broker has it, before stitching and the sink,
and a refused event never reaches ClickHouse at all (its reason is only in the dead-letter topic). Why only
while watched: reading every raw event costs the process a little CPU per event, which a pipeline nobody looks
at should not pay. The first look starts a reader at the last ``keep`` records of each partition, so the page
is filled at once; the reader stops by itself ``idle_s`` after the last look.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

log = logging.getLogger(__name__)
UNKNOWN_SOURCE = ""  # a dead letter without a source (refused by the stitcher, not at the edge)


class LiveTail:
    """Per source the last ``keep`` events as received, and the last ``keep`` dead letters, newest first."""

    def __init__(
        self, bootstrap: str, raw_topics: Iterable[str], deadletter_topic: str, keep: int = 50, idle_s: float = 60.0
    ) -> None:
        self.bootstrap = bootstrap
        self.raw_topics = list(raw_topics)
        self.deadletter_topic = deadletter_topic
        self.keep = keep
        self.idle_s = idle_s
        self._events: dict[str, deque[tuple[int, bytes]]] = {}
        self._rejected: deque[tuple[int, bytes]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._watched = 0.0
        self._thread: threading.Thread | None = None
        self._caught_up = threading.Event()
        self._stop = threading.Event()

    def watch(self, wait_s: float = 5.0) -> bool:
        """Blocking (call it in a thread): note a look, start the reader if it is not running, and wait until it
        has read what the topics held when it started. False if that took longer than ``wait_s``."""
        with self._lock:
            self._watched = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._caught_up.clear()
                self._events.clear()
                self._rejected.clear()
                self._thread = threading.Thread(target=self._read, name="live-tail", daemon=True)
                self._thread.start()
        return self._caught_up.wait(wait_s)

    def start(self) -> LiveTail:
        """Nothing to do before the first look (the reader starts then); here to be a part like the others."""
        return self

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout=5)

    @property
    def reading(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def events(self, source: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest events (of one source, or of all), newest first, each with the broker's timestamp."""
        with self._lock:
            chosen = [self._events.get(source, deque())] if source is not None else list(self._events.values())
            records = sorted((r for d in chosen for r in d), key=lambda r: r[0], reverse=True)
        return [_decoded(ts, value) for ts, value in records[: limit or self.keep]]

    def rejected(self, source: str | None = None) -> list[dict[str, Any]]:
        """The newest dead letters (of one source, or all), newest first: reason, source, the event as sent."""
        with self._lock:
            records = sorted(self._rejected, key=lambda r: r[0], reverse=True)
        found = [_decoded(ts, value) for ts, value in records]
        return [r for r in found if source is None or r.get("source", UNKNOWN_SOURCE) == source]

    def counts(self) -> dict[str, int]:
        """Events held per source (at most ``keep``)."""
        with self._lock:
            return {name: len(d) for name, d in self._events.items()}

    def apply(self, topic: str, timestamp_ms: int, value: bytes) -> None:
        """One record read from a topic; tests call it directly."""
        if topic == self.deadletter_topic:
            with self._lock:
                self._rejected.append((timestamp_ms, value))
            return
        try:
            source = str(orjson.loads(value).get("sourceId") or UNKNOWN_SOURCE)
        except (orjson.JSONDecodeError, AttributeError):
            return
        with self._lock:
            held = self._events.get(source)
            if held is None:
                held = self._events[source] = deque(maxlen=self.keep)
            held.append((timestamp_ms, value))

    def _read(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"cdp-live-{secrets.token_hex(6)}",  # never commits: a look reads the tail afresh
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
            }
        )
        try:
            targets = self._assign_tail(consumer)
            while not self._stop.is_set() and time.monotonic() - self._watched < self.idle_s:
                for msg in consumer.consume(num_messages=1000, timeout=0.2):
                    topic, value = msg.topic(), msg.value()
                    if msg.error() or topic is None or value is None:
                        continue
                    self.apply(topic, msg.timestamp()[1], value)
                if targets:
                    for tp in consumer.position([TopicPartition(t, p) for t, p in targets]):
                        if tp.offset >= targets[(tp.topic, tp.partition)]:
                            del targets[(tp.topic, tp.partition)]
                if not targets:
                    self._caught_up.set()
        except Exception:  # a failed reader leaves the page empty, and the next look starts another
            log.exception("live tail stopped")
        finally:
            self._caught_up.set()
            consumer.close()

    def _assign_tail(self, consumer: Consumer) -> dict[tuple[str, int], int]:
        """Assigns every partition at its last ``keep`` records; returns the end offsets to catch up to."""
        assignment, targets = [], {}
        topics = [*self.raw_topics, self.deadletter_topic]
        meta = consumer.list_topics(timeout=10).topics
        for topic in topics:
            if topic not in meta:
                continue
            for partition in sorted(meta[topic].partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                assignment.append(TopicPartition(topic, partition, max(low, high - self.keep)))
                if high > low:
                    targets[(topic, partition)] = high
        consumer.assign(assignment)
        return targets


def _decoded(timestamp_ms: int, value: bytes) -> dict[str, Any]:
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError:
        record = {"raw": value.decode("utf-8", "replace")}
    if not isinstance(record, dict):
        record = {"raw": record}
    record["_kafka_ms"] = timestamp_ms
    return record
