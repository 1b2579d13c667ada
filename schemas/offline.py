"""Offline rows (till receipts, CRM contacts, or ready-made Segment events) -> Segment events.

CSV column mapping (header names, case-insensitive; unknown columns are kept as properties/traits):

Till receipt (recognised by `receipt_id`):
  receipt_id -> messageId "receipt-<id>" and properties.order_id; timestamp -> timestamp;
  email, phone, loyalty_id -> context.traits (the identifiers that stitch the receipt to a person);
  customer_id -> userId; total -> properties.revenue (number); currency, store_id -> properties;
  items -> properties.items (JSON text or a plain string).
  Becomes: track "Order Completed".
CRM contact (recognised by `crm_id`):
  crm_id -> traits.crm_id and messageId "crm-<id>-<updated_at or created_at>"; email, phone, first_name,
  last_name, created_at, and any other column -> traits; customer_id -> userId.
  Becomes: identify.
JSON Lines: each line is a Segment event (any type), taken as is.

A receipt or contact often carries no cookie or user id, only an e-mail, phone or loyalty id; such events
are valid here as long as one identifier is present (the Segment HTTP API would demand userId/anonymousId).
"""

from __future__ import annotations

from typing import Any

import orjson

RECEIPT_IDENTIFIERS = ("email", "phone", "loyalty_id")


class RowError(ValueError):
    """A row that cannot become an event; the message names the column."""


def _clean(row: dict[str, Any]) -> dict[str, str]:
    return {str(k).strip().lower(): str(v).strip() for k, v in row.items() if k is not None and v not in (None, "")}


def _number(value: str, column: str) -> float:
    try:
        return float(value.replace(",", "."))
    except ValueError as exc:
        raise RowError(f"{column}: not a number: {value!r}") from exc


def receipt_event(row: dict[str, Any]) -> dict[str, Any]:
    r = _clean(row)
    receipt_id = r.pop("receipt_id", "")
    if not receipt_id:
        raise RowError("receipt_id: missing")
    traits = {k: r.pop(k) for k in RECEIPT_IDENTIFIERS if k in r}
    user_id = r.pop("customer_id", None)
    if not traits and not user_id:
        raise RowError("email, phone, loyalty_id or customer_id: at least one is required")
    props: dict[str, Any] = {"order_id": receipt_id}
    if "total" in r:
        props["revenue"] = _number(r.pop("total"), "total")
    if "items" in r:
        raw = r.pop("items")
        try:
            props["items"] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            props["items"] = raw
    timestamp = r.pop("timestamp", None)
    props.update(r)
    event: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"receipt-{receipt_id}",
        "properties": props,
        "context": {"traits": traits},
    }
    if user_id:
        event["userId"] = user_id
    if timestamp:
        event["timestamp"] = timestamp
    return event


def contact_event(row: dict[str, Any]) -> dict[str, Any]:
    r = _clean(row)
    crm_id = r.get("crm_id")
    if not crm_id:
        raise RowError("crm_id: missing")
    user_id = r.pop("customer_id", None)
    version = r.get("updated_at") or r.get("created_at") or ""
    event: dict[str, Any] = {"type": "identify", "messageId": f"crm-{crm_id}-{version}", "traits": r}
    if user_id:
        event["userId"] = user_id
    if "updated_at" in r or "created_at" in r:
        event["timestamp"] = r.get("updated_at") or r["created_at"]
    return event


def row_event(row: dict[str, Any]) -> dict[str, Any]:
    """Pick the mapping by the columns present."""
    keys = {str(k).strip().lower() for k in row if k}
    if "receipt_id" in keys:
        return receipt_event(row)
    if "crm_id" in keys:
        return contact_event(row)
    raise RowError("header: expected a receipt_id (till receipts) or crm_id (CRM contacts) column")
