"""The Kafka record of an accepted raw event, one rule for every way in (collector, webhooks, `cdp import`, pull
sources, benchmarks): its key, and the stitch hint it carries.

The key is the node key of the event's primary identifier (its strongest, ``identity.extract``): producers
partition with murmur2, so the raw event lands on the partition of the identity-graph node that stitches it, and
the worker owning that partition reads it directly instead of passing it on (streams.stitcher). A producer with
other identity rules only costs that hop, never a wrong profile. One partition keeps a person's events in order
per primary identifier; stitching does not depend on order. An event without a usable identifier is keyed by its
messageId, so a retry lands where the first attempt did.

The stitch hint (header ``HINT_HEADER``) is what the stitcher needs of the event before it knows whether the event
takes the fast path: the identifier keys, the event's time and receipt, its messageId, and the digest of the rules
that computed the keys. The producer has extracted the identifiers anyway (for the key), and producers scale out,
so a worker whose rules have the same digest reads the hint and, for an event whose identifiers are one profile
already, never decodes the event at all. A hint under other rules, or a record without one, is read the long way
(identical outcome: the property is tested).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from identity.extract import identifier_keys
from identity.rules import IdentityRules
from schemas.timestamps import parse_ts
from streams.producer import CHECKED_HEADER, Headers

__all__ = ["HINT_HEADER", "StitchHint", "event_ms", "raw_event_key", "raw_event_record", "received_ms"]

HINT_HEADER = "cdp-stitch"

RawRecord = tuple[str, bytes | None, bytes, Headers]
"""(topic, key, value, headers) of an accepted raw event."""


@dataclass(frozen=True, slots=True)
class StitchHint:
    rules: str  # IdentityRules.fingerprint of the rules that extracted ``keys``
    ts_ms: int  # event_ms
    received_ms: int | None  # received_ms
    message_id: str
    keys: tuple[str, ...]  # identifier_keys, strongest first

    def encode(self) -> bytes:
        return orjson.dumps([self.rules, self.ts_ms, self.received_ms, self.message_id, *self.keys])

    @classmethod
    def decode(cls, raw: bytes) -> StitchHint | None:
        """None for anything but a well-formed hint (any producer may write the raw topics)."""
        try:
            rules, ts_ms, received, message_id, *keys = orjson.loads(raw)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return None
        for key in keys:
            if type(key) is not str:
                return None
        if type(rules) is not str or type(ts_ms) is not int or type(message_id) is not str:
            return None
        if received is not None and type(received) is not int:
            return None
        return cls(rules, ts_ms, received, message_id, tuple(keys))


def event_ms(event: Mapping[str, Any]) -> int:
    """The event's time as the graph orders it: its timestamp, else its receipt."""
    return int(parse_ts(event.get("timestamp") or event.get("receivedAt")).timestamp() * 1000)


def received_ms(event: Mapping[str, Any]) -> int | None:
    """The server's receipt (what the privacy ledger compares with), None if the event has none."""
    received = event.get("receivedAt")
    return int(parse_ts(received).timestamp() * 1000) if received else None


def _key_of(keys: Sequence[str], event: Mapping[str, Any]) -> bytes | None:
    if keys:
        return keys[0].encode()
    message_id = event.get("messageId")
    return str(message_id).encode() if message_id else None


def raw_event_key(event: Mapping[str, Any], rules: IdentityRules) -> bytes | None:
    return _key_of(identifier_keys(event, rules), event)


def raw_event_record(topic: str, event: Mapping[str, Any], rules: IdentityRules) -> RawRecord:
    """The record of an event that passed validation (``CHECKED_HEADER``), with its stitch hint when it has a
    messageId (an event without one is dead-lettered by the stitcher, the long way)."""
    keys = identifier_keys(event, rules)
    headers: Headers = [CHECKED_HEADER]
    message_id = event.get("messageId")
    if type(message_id) is str:
        try:
            hint = StitchHint(rules.fingerprint, event_ms(event), received_ms(event), message_id, keys)
        except (ValueError, TypeError, OverflowError):  # a time the stitcher then dead-letters, the long way
            hint = None
        if hint is not None:
            headers.append((HINT_HEADER, hint.encode()))
    return topic, _key_of(keys, event), orjson.dumps(event), headers
