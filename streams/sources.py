"""Sources and their write keys, kept in a compacted Kafka topic.

Every collector follows the topic, so a source created by `cdp sources create` (from any process) is known to
all collectors within milliseconds and survives restarts without any extra database.
Write keys identify a source; they are public in browsers by design and are not secrets.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import asdict, dataclass

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cdp.settings import CHANNELS
from streams.producer import AsyncProducer


@dataclass(frozen=True)
class Source:
    write_key: str
    name: str
    channel: str
    created_at_ms: int


def new_source(name: str, channel: str) -> Source:
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}")
    if not name.strip():
        raise ValueError("name must not be empty")
    return Source(f"wk_{secrets.token_urlsafe(18)}", name.strip(), channel, int(time.time() * 1000))


def publish_source(producer: AsyncProducer, topic: str, source: Source) -> None:
    producer.send_sync([(topic, source.write_key.encode(), orjson.dumps(asdict(source)))])


class SourceRegistry:
    """Follows the sources topic from the beginning in a background thread."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._sources: dict[str, Source] = {}
        self._lock = threading.Lock()
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"cdp-sources-{secrets.token_hex(6)}",  # every follower reads everything
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self._thread = threading.Thread(target=self._follow, name="sources-follower", daemon=True)

    def start(self, wait: float = 30.0) -> SourceRegistry:
        self._thread.start()
        if not self._caught_up.wait(wait):
            raise RuntimeError(f"could not read topic {self._topic} within {wait} s")
        return self

    def _follow(self) -> None:
        self._consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
        _, high = self._consumer.get_watermark_offsets(TopicPartition(self._topic, 0), timeout=30)
        position = 0
        if high == 0:
            self._caught_up.set()
        while not self._stop.is_set():
            msg = self._consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            position = msg.offset() + 1
            key = msg.key().decode() if msg.key() else ""
            with self._lock:
                if msg.value() is None:
                    self._sources.pop(key, None)
                else:
                    self._sources[key] = Source(**orjson.loads(msg.value()))
            if position >= high:
                self._caught_up.set()
        self._consumer.close()

    def get(self, write_key: str) -> Source | None:
        with self._lock:
            return self._sources.get(write_key)

    def all(self) -> list[Source]:
        with self._lock:
            return sorted(self._sources.values(), key=lambda s: s.created_at_ms)

    def wait_for(self, write_key: str, timeout: float = 5.0) -> Source | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (s := self.get(write_key)) is not None:
                return s
            time.sleep(0.02)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
