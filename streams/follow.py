"""Following Kafka topics from the beginning into memory, in a background thread.

Used for state every process needs a full copy of and that must survive restarts without another database:
sources, audience definitions, and the serving index (identifier -> profile, member -> audiences). The topics
are compacted, so reading from the beginning costs the current state, not the whole history.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

Apply = Callable[[Message], None]


class TopicFollower:
    def __init__(self, bootstrap: str, handlers: dict[str, Apply], name: str = "follower") -> None:
        self._handlers = handlers
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self.applied = 0
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"cdp-{name}-{secrets.token_hex(6)}",  # every follower reads everything
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 50,
            }
        )
        self._thread = threading.Thread(target=self._follow, name=name, daemon=True)

    def start(self, wait: float = 60.0) -> TopicFollower:
        self._thread.start()
        if not self._caught_up.wait(wait):
            raise RuntimeError(f"could not read {', '.join(self._handlers)} within {wait} s")
        return self

    def _follow(self) -> None:
        assignment: list[TopicPartition] = []
        targets: dict[tuple[str, int], int] = {}
        for name in self._handlers:
            meta = self._consumer.list_topics(name, timeout=30).topics[name]
            for p in meta.partitions:
                assignment.append(TopicPartition(name, p, OFFSET_BEGINNING))
                _, high = self._consumer.get_watermark_offsets(TopicPartition(name, p), timeout=30)
                if high > 0:
                    targets[(name, p)] = high
        self._consumer.assign(assignment)
        if not targets:
            self._caught_up.set()
        while not self._stop.is_set():
            for msg in self._consumer.consume(num_messages=5000, timeout=0.05):
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                if msg.error() or topic is None or partition is None or offset is None:
                    continue
                self._handlers[topic](msg)
                self.applied += 1
                key = (topic, partition)
                if key in targets and offset + 1 >= targets[key]:
                    del targets[key]
                    if not targets:
                        self._caught_up.set()
        self._consumer.close()

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
