"""Following Kafka topics from the beginning into memory, in a background thread.

Used for state every process needs a full copy of and that must survive restarts without another database:
sources, audience definitions, and the serving index (identifier -> profile, member -> audiences). The topics
are compacted, so reading from the beginning costs the current state, not the whole history.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Generic, Self, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

Apply = Callable[[Message], None]
V = TypeVar("V")
log = logging.getLogger(__name__)


def high_watermark(consumer: Consumer, topic: str, partition: int, timeout: float = 60.0) -> int:
    """A partition's end offset, retried: right after creation the broker can still answer NOT_LEADER_FOR_PARTITION."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class TopicFollower:
    """Nothing connects before ``start``: a follower that is built but never started holds no Kafka client."""

    _consumer: Consumer

    def __init__(self, bootstrap: str, handlers: dict[str, Apply], name: str = "follower") -> None:
        self._handlers = handlers
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self.applied = 0
        self._failed = False
        self._config = {
            "bootstrap.servers": bootstrap,
            "group.id": f"cdp-{name}-{secrets.token_hex(6)}",  # every follower reads everything
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            # librdkafka pauses a partition for a whole second whenever its prefetch queue is full, which holds
            # back catching up on a large topic; a short back-off keeps the fetcher busy (as in sinks/writer.py).
            "fetch.queue.backoff.ms": 20,
        }
        self._thread = threading.Thread(target=self._follow, name=name, daemon=True)

    def start(self, wait: float = 60.0) -> TopicFollower:
        self._consumer = Consumer(self._config)
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
        return high_watermark(self._consumer, topic, partition, timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class CompactedTopic(Generic[V]):
    """A compacted topic followed into a dict: key -> its latest decoded value; a tombstone removes the key.

    The shape of every "definitions in Kafka" state (sources, audiences): the topic is the database, each process
    holds a copy, and ``version`` goes up on every change so that a reader polling it notices new and deleted
    keys. ``apply`` is what the follower thread calls for each record; tests call it directly.
    """

    def __init__(self, bootstrap: str, topic: str, decode: Callable[[bytes], V], name: str) -> None:
        self.topic = topic
        self.version = 0
        self._decode = decode
        self._items: dict[str, V] = {}
        self._lock = threading.Lock()
        self._follower = TopicFollower(bootstrap, {topic: self._on_message}, name=name)

    def _on_message(self, msg: Message) -> None:
        self.apply((msg.key() or b"").decode(), msg.value())

    def apply(self, key: str, value: bytes | None) -> None:
        with self._lock:
            if value is None:
                self._items.pop(key, None)
            else:
                self._items[key] = self._decode(value)
            self.version += 1

    def start(self, wait: float = 30.0) -> Self:
        """Blocks until the current state is read (call it in a thread from async code)."""
        self._follower.start(wait)
        return self

    def stop(self) -> None:
        self._follower.stop()

    def get(self, key: str) -> V | None:
        with self._lock:
            return self._items.get(key)

    def values(self) -> list[V]:
        with self._lock:
            return list(self._items.values())


POLL_S = 0.02


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Blocking: for threads and command-line code, never inside ``async def`` (see :func:`wait_until_async`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(POLL_S)
    return predicate()


async def wait_until_async(predicate: Callable[[], bool], timeout: float) -> bool:
    """The same wait on the event loop: other requests keep being served while a follower thread catches up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(POLL_S)
    return predicate()
