"""Validation of events read back from Kafka by the workers (any producer can write to the raw topics)."""

from __future__ import annotations

from typing import Any

from schemas.errors import EventError
from schemas.segment import parse_event


def invalid_reason(event: Any) -> str | None:
    """None when the event is a valid enriched Segment event, else the reason with field paths."""
    if not isinstance(event, dict):
        return "event: not a JSON object"
    try:
        parse_event(event, None)
    except EventError as exc:
        return "; ".join(f"{e.loc}: {e.msg}" for e in exc.errors) or "invalid event"
    if not isinstance(event.get("messageId"), str) or not event["messageId"]:
        return "messageId: missing"
    return None
