"""Sources and their write keys, kept in a compacted Kafka topic.

Every collector follows the topic, so a source created by `cdp sources create` (from any process) is known to
all collectors within milliseconds and survives restarts without any extra database.
Write keys identify a source; they are public in browsers by design and are not secrets.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass

import orjson

from schemas.settings import CHANNELS
from streams.follow import CompactedTopic, wait_until
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


def _decode(value: bytes) -> Source:
    return Source(**orjson.loads(value))


class SourceRegistry(CompactedTopic[Source]):
    """The sources topic, followed into memory."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic, _decode, name="sources")

    def all(self) -> list[Source]:
        return sorted(self.values(), key=lambda s: s.created_at_ms)

    def wait_for(self, write_key: str, timeout: float = 5.0) -> Source | None:
        """Blocking: for command-line code and threads."""
        wait_until(lambda: self.get(write_key) is not None, timeout)
        return self.get(write_key)
