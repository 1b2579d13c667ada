"""Kafka record values -> ClickHouse rows, one function per table. Pure, so tested without any I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from schemas.timestamps import parse_ts

EVENT_COLUMNS = (
    "message_id",
    "channel",
    "source_id",
    "type",
    "event",
    "anonymous_id",
    "user_id",
    "profile_id",
    "identity_key",
    "timestamp",
    "received_at",
    "properties",
    "context",
    "traits",
)
IDENTITY_COLUMNS = ("id_type", "id_value", "profile_id", "first_seen", "updated_at", "version")
MERGE_COLUMNS = ("from_profile", "into_profile", "cause", "merged_at", "event_time")
REFUSAL_COLUMNS = ("node", "peer", "reason", "cause", "refused_at")


Row = tuple[Any, ...]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode() if value else "{}"


def event_row(e: dict[str, Any]) -> Row:
    etype = e.get("type", "track")
    name = e.get("event") if etype == "track" else (e.get("name") or e.get("event") or "")
    return (
        e["messageId"],
        e.get("channel", ""),
        e.get("sourceId", ""),
        etype,
        name or "",
        str(e.get("anonymousId") or ""),
        str(e.get("userId") or ""),
        e.get("profileId", ""),
        e.get("identityKey", ""),
        parse_ts(e.get("timestamp")),
        parse_ts(e.get("receivedAt")),
        _json(e.get("properties")),
        _json(e.get("context")),
        _json(e.get("traits")),
    )


def identity_row(v: dict[str, Any]) -> Row:
    return (
        v["id_type"],
        v["id_value"],
        v["profile_id"],
        parse_ts(v["first_seen_ms"]),
        parse_ts(v["updated_ms"]),
        int(v["version"]),
    )


def merge_row(v: dict[str, Any]) -> Row:
    """``merged_at`` when the stitcher merged (records from before it said so: the event time), ``event_time``
    the time of the event that caused it."""
    event_time = parse_ts(v["event_ms"] if "event_ms" in v else v["ts_ms"])
    merged_at = parse_ts(v["merged_ms"]) if "merged_ms" in v else parse_ts(v["ts_ms"])
    return (v["from_profile"], v["into_profile"], v.get("cause", ""), merged_at, event_time)


def refusal_row(v: dict[str, Any]) -> Row:
    return (v["node"], v["peer"], v["reason"], v.get("cause", ""), parse_ts(v["ts_ms"]))


RowFn = Callable[[dict[str, Any]], Row]
