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
from confluent_kafka import Message

from schemas.settings import CHANNELS
from streams.follow import TopicFollower, wait_until
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
    """The sources topic, followed into memory."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._sources: dict[str, Source] = {}
        self._lock = threading.Lock()
        self._follower = TopicFollower(bootstrap, {topic: self._apply}, name="sources")

    def _apply(self, msg: Message) -> None:
        key = (msg.key() or b"").decode()
        value = msg.value()
        with self._lock:
            if value is None:
                self._sources.pop(key, None)
            else:
                self._sources[key] = Source(**orjson.loads(value))

    def start(self, wait: float = 30.0) -> SourceRegistry:
        self._follower.start(wait)
        return self

    def get(self, write_key: str) -> Source | None:
        with self._lock:
            return self._sources.get(write_key)

    def all(self) -> list[Source]:
        with self._lock:
            return sorted(self._sources.values(), key=lambda s: s.created_at_ms)

    def wait_for(self, write_key: str, timeout: float = 5.0) -> Source | None:
        wait_until(lambda: self.get(write_key) is not None, timeout)
        return self.get(write_key)

    def stop(self) -> None:
        self._follower.stop()
