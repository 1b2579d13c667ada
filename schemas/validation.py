"""Validation of events outside the HTTP edge: events read back from Kafka by the workers (any producer can
write to the raw topics) and offline rows from `cdp import`."""

from __future__ import annotations

from typing import Any

from schemas.errors import EventError, FieldError
from schemas.segment import accept_event

# Enrichment (receivedAt, context.ua, ...) may push an event that was just under the edge limit over it; the
# worker must not dead-letter what the collector accepted.
WORKER_MAX_BYTES = 256 * 1024
OFFLINE_IDENTIFIER_TRAITS = ("email", "phone", "loyalty_id", "crm_id")


def _reason(errors: list[FieldError]) -> str:
    return "; ".join(f"{e.loc}: {e.msg}" for e in errors) or "invalid event"


def invalid_reason(event: Any) -> str | None:
    """None when the event is a valid enriched Segment event, else the reason with field paths."""
    if not isinstance(event, dict):
        return "event: not a JSON object"
    try:
        accept_event(event, None, max_bytes=WORKER_MAX_BYTES)
    except EventError as exc:
        errors = [e for e in exc.errors if not _satisfied_offline(event, e)]
        if errors:
            return _reason(errors)
    if not isinstance(event.get("messageId"), str) or not event["messageId"]:
        return "messageId: missing"
    return None


def offline_invalid_reason(event: Any) -> str | None:
    """Like the collector's check, except that an e-mail, phone, loyalty or CRM id in the traits may stand in
    for userId/anonymousId: till receipts and CRM contacts rarely carry a cookie or a user id."""
    if not isinstance(event, dict):
        return "row: not a JSON object"
    try:
        accept_event(event, None)
    except EventError as exc:
        errors = [e for e in exc.errors if not _satisfied_offline(event, e)]
        if errors:
            return _reason(errors)
    return None


def _satisfied_offline(event: dict[str, Any], error: FieldError) -> bool:
    if error.loc != "userId" or "anonymousId" not in error.msg:
        return False
    for holder in (event.get("traits"), (event.get("context") or {}).get("traits")):
        if isinstance(holder, dict) and any(holder.get(k) not in (None, "") for k in OFFLINE_IDENTIFIER_TRAITS):
            return True
    return False
