"""Following Kafka topics from the beginning into memory, in a background thread.

Used for state every process needs a full copy of and that must survive restarts without another database:
sources, audience definitions, and the serving index (identifier -> profile, member -> audiences). The topics
are compacted, so reading from the beginning costs the current state, not the whole history.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

Apply = Callable[[Message], None]
log = logging.getLogger(__name__)


class TopicFollower:
    def __init__(self, bootstrap: str, handlers: dict[str, Apply], name: str = "follower") -> None:
        self._handlers = handlers
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self.applied = 0
        self._failed = False
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"cdp-{name}-{secrets.token_hex(6)}",  # every follower reads everything
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 50,
                # librdkafka's default 1 s pause whenever a partition's prefetch queue is full held catching up
                # to 163-223k records/s; 20 ms gave 763-790k (no-op handler, 600k records; see sinks/writer.py).
                "fetch.queue.backoff.ms": 20,
            }
        )
        self._thread = threading.Thread(target=self._follow, name=name, daemon=True)

    def start(self, wait: float = 60.0) -> TopicFollower:
        self._thread.start()
        if not self._caught_up.wait(wait) or self._failed:
            raise RuntimeError(f"could not read {', '.join(self._handlers)} within {wait} s")
        return self

    def _follow(self) -> None:
        try:
            self._follow_topics()
        except Exception:  # a dead follower must be loud: start() then fails instead of waiting in silence
            log.exception("follower %s stopped", self._thread.name)
            self._failed = True
            self._caught_up.set()

    def _follow_topics(self) -> None:
        assignment: list[TopicPartition] = []
        targets: dict[tuple[str, int], int] = {}
        for name in self._handlers:
            for p in self._partitions(name):
                assignment.append(TopicPartition(name, p, OFFSET_BEGINNING))
                high = self._high_watermark(name, p)
                if high > 0:
                    targets[(name, p)] = high
        self._consumer.assign(assignment)
        if not targets:
            self._caught_up.set()
        while not self._stop.is_set():
            for msg in self._consumer.consume(num_messages=5000, timeout=0.05):
                topic = msg.topic()
                if msg.error() or topic is None:
                    continue
                self._handlers[topic](msg)
                self.applied += 1
            if targets:
                # Caught up once the position reached the end offset seen at start: by position, not by the last
                # record's offset, since a topic written in transactions ends with a commit marker.
                waiting = [TopicPartition(t, p) for t, p in targets]
                for tp in self._consumer.position(waiting):
                    if tp.offset >= targets[(tp.topic, tp.partition)]:
                        del targets[(tp.topic, tp.partition)]
                if not targets:
                    self._caught_up.set()
        self._consumer.close()

    def _partitions(self, topic: str, timeout: float = 60.0) -> list[int]:
        """Partitions of a topic once each has a leader: a topic created a moment ago may not have one yet."""
        deadline = time.monotonic() + timeout
        while True:
            meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
            if (
                meta is not None
                and meta.error is None
                and meta.partitions
                and all(pm.leader >= 0 for pm in meta.partitions.values())
            ):
                return sorted(meta.partitions)
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no leader for every partition after {timeout:.0f} s")
            time.sleep(0.2)

    def _high_watermark(self, topic: str, partition: int, timeout: float = 60.0) -> int:
        """Retried: right after creation the broker can still answer NOT_LEADER_FOR_PARTITION."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return int(self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
