"""The Kafka key of an accepted raw event, one rule for every way in (collector, `cdp import`, benchmarks).

The key is the node key of the event's primary identifier (its strongest, ``identity.extract``): producers
partition with murmur2, so the raw event lands on the partition of the identity-graph node that stitches it, and
the worker owning that partition reads it directly instead of passing it on (streams.stitcher). A producer with
other identity rules only costs that hop, never a wrong profile. One partition keeps a person's events in order
per primary identifier; stitching does not depend on order. An event without a usable identifier is keyed by its
messageId, so a retry lands where the first attempt did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from identity.extract import identifier_keys
from identity.rules import IdentityRules


def raw_event_key(event: Mapping[str, Any], rules: IdentityRules) -> bytes | None:
    keys = identifier_keys(event, rules)
    if keys:
        return keys[0].encode()
    message_id = event.get("messageId")
    return str(message_id).encode() if message_id else None
