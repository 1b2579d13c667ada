"""The Kafka key of an accepted raw event, one rule for every way in (collector, `cdp import`, benchmarks).

The key picks the partition, and one partition keeps order: a browser's or a device's events before and after
a login share the anonymousId, so it goes first; server-side and offline events have only a userId (or the
previousId of an alias). An event with none of them is keyed by its messageId, so a retry lands where the
first attempt did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KEY_FIELDS = ("anonymousId", "userId", "previousId", "messageId")


def raw_event_key(event: Mapping[str, Any]) -> bytes | None:
    for name in KEY_FIELDS:
        if value := event.get(name):
            return str(value).encode()
    return None
