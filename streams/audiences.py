"""Audience definitions, kept in the compacted topic `cdp.audiences` (id -> definition, tombstone on delete),
followed into memory by every process that needs them (the API for CRUD, the worker for evaluation)."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import orjson
from confluent_kafka import Message

from streams.follow import TopicFollower, wait_until
from streams.producer import AsyncProducer


def new_audience_id() -> str:
    return f"aud_{secrets.token_hex(8)}"


class AudienceDefinitions:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._defs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.version = 0  # bumped on every change, so evaluators notice new and deleted audiences
        self._follower = TopicFollower(bootstrap, {topic: self._apply}, name="audiences")

    def _apply(self, msg: Message) -> None:
        key = (msg.key() or b"").decode()
        value = msg.value()
        with self._lock:
            if value is None:
                self._defs.pop(key, None)
            else:
                self._defs[key] = orjson.loads(value)
            self.version += 1

    def start(self, wait: float = 30.0) -> AudienceDefinitions:
        self._follower.start(wait)
        return self

    def stop(self) -> None:
        self._follower.stop()

    def get(self, audience_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._defs.get(audience_id)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted(self._defs.values(), key=lambda d: d["created_at_ms"])

    async def create(
        self,
        producer: AsyncProducer,
        name: str,
        scope: str,
        rule: dict[str, Any],
        description: str | None,
        timeout: float,
    ) -> dict[str, Any]:
        audience_id = new_audience_id()
        definition: dict[str, Any] = {
            "id": audience_id,
            "name": name,
            "scope": scope,
            "rule": rule,
            "description": description,
            "created_at_ms": int(time.time() * 1000),
        }
        await producer.send_many([(self.topic, audience_id.encode(), orjson.dumps(definition))], timeout)
        wait_until(lambda: self.get(audience_id) is not None, 5.0)
        return definition

    async def delete(self, producer: AsyncProducer, audience_id: str, timeout: float) -> None:
        await producer.send_many([(self.topic, audience_id.encode(), None)], timeout)
        wait_until(lambda: self.get(audience_id) is None, 5.0)
