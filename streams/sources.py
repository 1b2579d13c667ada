"""Sources and their write keys, kept in a compacted Kafka topic.

Every collector follows the topic, so a source created by `cdp sources create` (from any process) is known to
all collectors within milliseconds and survives restarts without any extra database.
Write keys identify a source; they are public in browsers by design and are not secrets.

A source is of a kind: ``sdk`` (events pushed by SDKs and `cdp import` with its write key), or a pull source
(``postgres``, ``webhook``, ``folder``: streams/pull.py, api/routes/webhooks.py), whose ``config`` says where
its data comes from and through which mapping. A webhook source's config holds its signing secret: the topic
is as private as the broker.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from schemas.settings import CHANNELS, SOURCE_KINDS
from streams.follow import CompactedTopic, wait_until
from streams.producer import AsyncProducer


@dataclass(frozen=True)
class Source:
    write_key: str
    name: str
    channel: str
    created_at_ms: int
    kind: str = "sdk"
    config: dict[str, Any] = field(default_factory=dict)


def new_source(name: str, channel: str, kind: str = "sdk", config: dict[str, Any] | None = None) -> Source:
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}")
    if not name.strip():
        raise ValueError("name must not be empty")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SOURCE_KINDS)}")
    return Source(
        f"wk_{secrets.token_urlsafe(18)}", name.strip(), channel, int(time.time() * 1000), kind, dict(config or {})
    )


def consent_default(source: Source) -> dict[str, bool] | None:
    """The source's consent for events without a consent object (None: the built-in default, schemas/consent.py)."""
    default = source.config.get("consent_default")
    return dict(default) if isinstance(default, dict) else None


def source_record(topic: str, source: Source) -> tuple[str, bytes, bytes]:
    """The record of a source in the sources topic: keyed by write key, so compaction keeps its latest form."""
    return topic, source.write_key.encode(), orjson.dumps(asdict(source))


def publish_source(producer: AsyncProducer, topic: str, source: Source) -> None:
    producer.send_sync([source_record(topic, source)])


def _decode(value: bytes) -> Source:
    return Source(**orjson.loads(value))


class SourceRegistry(CompactedTopic[Source]):
    """The sources topic, followed into memory."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic, _decode, name="sources")

    def all(self) -> list[Source]:
        return sorted(self.values(), key=lambda s: s.created_at_ms)

    def named(self, name: str, kind: str | None = None) -> Source | None:
        """The newest source of that name (and kind): pull sources are addressed by name, not write key."""
        matches = [s for s in self.all() if s.name == name and (kind is None or s.kind == kind)]
        return matches[-1] if matches else None

    def wait_for(self, write_key: str, timeout: float = 5.0) -> Source | None:
        """Blocking: for command-line code and threads."""
        wait_until(lambda: self.get(write_key) is not None, timeout)
        return self.get(write_key)
