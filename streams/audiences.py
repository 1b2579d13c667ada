"""Audience definitions, kept in the compacted topic `cdp.audiences` (id -> definition, tombstone on delete),
followed into memory by every process that needs them (the API for CRUD, the worker for evaluation)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from streams.follow import CompactedTopic, wait_until_async
from streams.producer import AsyncProducer

Definition = dict[str, Any]


def new_audience_id() -> str:
    return f"aud_{secrets.token_hex(8)}"


class AudienceDefinitions(CompactedTopic[Definition]):
    """Creating or deleting waits until this process has read its own write back (so a GET right after the
    POST finds the audience), without holding up the event loop the collector shares in `cdp run`."""

    def __init__(self, bootstrap: str, topic: str, visible_within_s: float = 5.0) -> None:
        super().__init__(bootstrap, topic, orjson.loads, name="audiences")
        self.visible_within_s = visible_within_s

    def all(self) -> list[Definition]:
        return sorted(self.values(), key=lambda d: d["created_at_ms"])

    async def create(
        self,
        producer: AsyncProducer,
        name: str,
        scope: str,
        rule: dict[str, Any],
        description: str | None,
        timeout: float,
        replacing: Definition | None = None,
        purpose: str | None = None,
    ) -> Definition:
        """A new audience, or a new definition of ``replacing`` (same id and creation time: its members are
        re-evaluated under the new rule, entering and exiting as they differ)."""
        audience_id = replacing["id"] if replacing is not None else new_audience_id()
        definition: Definition = {
            "id": audience_id,
            "name": name,
            "scope": scope,
            "rule": rule,
            "description": description,
            "purpose": purpose,
            "created_at_ms": replacing["created_at_ms"] if replacing is not None else int(time.time() * 1000),
        }
        await producer.send_many([(self.topic, audience_id.encode(), orjson.dumps(definition))], timeout)
        await wait_until_async(lambda: self.get(audience_id) == definition, self.visible_within_s)
        return definition

    async def delete(self, producer: AsyncProducer, audience_id: str, timeout: float) -> None:
        await producer.send_many([(self.topic, audience_id.encode(), None)], timeout)
        await wait_until_async(lambda: self.get(audience_id) is None, self.visible_within_s)
