"""Database change capture: a Debezium change record -> a Segment event, through a table mapping (pure).

Debezium writes one record per row change on a Kafka topic per table: the row's key as the record key, and a
value with ``op`` (``r`` snapshot read, ``c`` insert, ``u`` update, ``d`` delete), ``before``/``after``
images of the row and ``source`` (``ts_ms`` commit time, ``lsn``). A table mapping file (YAML,
`schemas/mappings/contacts.yaml` and `orders.yaml` shipped) says which columns are identifiers, traits and
properties (the grammar of `schemas/mapping.py`) plus two choices:

``message_id: version`` (contacts). Every state of a row is an event of its own, so the profile keeps the
history of the row. The messageId is derived from the source, the table, the row's key and the row's mapped
content: a redelivery after a restart and a re-snapshot of an unchanged row give the same messageId, and the
events store keeps it once. (The log position alone would not do: a re-snapshot reads every row again at a
new position.) Name a ``timestamp`` column such as ``updated_at``, so that a re-snapshot also gives the same
time; without one the commit time is used, and a snapshot's commit time is the snapshot's.

``message_id: row`` (orders). A row is one event whatever its versions: an order is completed once, and an
update (a corrected total) replaces the event rather than adding a second order. The events store keeps, of
the rows with one messageId, type, event name and day, the one with the latest ``sourceVersion`` (the change's
commit time; sinks/views/events_landing_mv.sql), whatever order they arrive in; so such a mapping must name a
``timestamp`` column that does not change (``created_at``). Two changes of one row committed in the same millisecond are
told apart only within one batch of the mapper, which keeps the later.

``on_delete``: ``unset`` (an identify with every trait of the mapping set to null: the traits the row set are
removed from the profile, its identifiers stay linked), ``void`` (``message_id: row`` only: the event is sent
again with ``deleted: true`` and without its number properties, so the order's revenue leaves the profile),
or ``ignore``.

A delete carries the old row only where the table's replica identity is FULL; otherwise only the key columns.
``replica_identity: full`` in the mapping asks the connector to set it (Debezium's
``replica.identity.autoset.values``), and ``void`` needs it to know the order's identifiers and time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from schemas.mapping import NUMERIC_TYPES, EventMapping, MappingError, canonical, load_yaml

MessageIdMode = Literal["version", "row"]
DeleteMode = Literal["unset", "void", "ignore"]


@dataclass(frozen=True, slots=True)
class TableMapping:
    description: str
    event: EventMapping
    message_id: MessageIdMode
    on_delete: DeleteMode
    replica_identity_full: bool

    @classmethod
    def parse(cls, spec: Any) -> TableMapping:
        if not isinstance(spec, Mapping):
            raise MappingError("mapping: must be a YAML object")
        event = EventMapping.parse(spec)
        message_id = spec.get("message_id", "version")
        if message_id not in ("version", "row"):
            raise MappingError("message_id: must be version or row")
        on_delete = spec.get("on_delete", "unset" if event.kind == "identify" else "ignore")
        if on_delete not in ("unset", "void", "ignore"):
            raise MappingError("on_delete: must be unset, void or ignore")
        if message_id == "row" and not event.has_timestamp:
            raise MappingError("fields: message_id: row needs a timestamp column that does not change (created_at)")
        if on_delete == "void" and message_id != "row":
            raise MappingError("on_delete: void replaces the row's event, so it needs message_id: row")
        if on_delete == "unset" and event.kind != "identify":
            raise MappingError("on_delete: unset removes traits, which an identify sets: use void for a track")
        full = bool(spec.get("replica_identity", "default") == "full")
        if on_delete == "void" and not full:
            raise MappingError("on_delete: void needs replica_identity: full (the deleted row's identifiers)")
        return cls(str(spec.get("description", "")).strip(), event, message_id, on_delete, full)

    @classmethod
    def from_yaml(cls, text: str) -> TableMapping:
        return cls.parse(load_yaml(text))


@dataclass(frozen=True, slots=True)
class Change:
    """The parts of a Debezium record a mapping needs."""

    op: str
    key: Any
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    ts_ms: int
    lsn: int | None


def parse_change(key: Any, value: Any) -> Change | None:
    """A Debezium record (key and value as decoded JSON, without schemas) -> Change; None for a tombstone or a
    record that is not a row change (heartbeats, schema changes). MappingError for a broken record."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise MappingError("record: not a JSON object")
    if "payload" in value and "op" not in value:  # converter with schemas enabled
        value = value["payload"]
        if value is None:
            return None
    if isinstance(key, Mapping) and "payload" in key and "schema" in key:
        key = key["payload"]
    op = value.get("op")
    if op not in ("r", "c", "u", "d"):
        return None
    source = value.get("source") if isinstance(value.get("source"), Mapping) else {}
    ts_ms = source.get("ts_ms") or value.get("ts_ms")
    if not isinstance(ts_ms, int):
        raise MappingError("source.ts_ms: missing")
    lsn = source.get("lsn")
    before, after = value.get("before"), value.get("after")
    return Change(
        op,
        key,
        before if isinstance(before, Mapping) else None,
        after if isinstance(after, Mapping) else None,
        ts_ms,
        lsn if isinstance(lsn, int) else None,
    )


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.hexdigest()[:32]


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def row_key(source: str, table: str, key: Any) -> str:
    """The partition key of a row's events: every version of a row stays in one partition, in order (a
    ``message_id: row`` mapping relies on the last version arriving last)."""
    return f"{source}/{table}/{canonical(key).decode()}"


def change_event(mapping: TableMapping, source: str, table: str, change: Change) -> dict[str, Any] | None:
    """The Segment event of one row change (with its messageId), or None when the mapping ignores it."""
    ident = (source.encode(), table.encode(), canonical(change.key))
    if change.op != "d":
        if change.after is None:
            raise MappingError(f"after: missing in a change with op {change.op}")
        event = mapping.event.build(change.after)
        # A version's digest is taken before the commit time is added (see above).
        message_id = _digest(*ident) if mapping.message_id == "row" else _digest(*ident, canonical(event))
        event.setdefault("timestamp", _iso_ms(change.ts_ms))
        event["messageId"] = f"cdc-{message_id}"
        event["sourceVersion"] = _iso_ms(change.ts_ms)
        return event
    if mapping.on_delete == "ignore":
        return None
    row = change.before if mapping.replica_identity_full and change.before else None
    if mapping.on_delete == "void":
        if row is None:
            raise MappingError("before: a delete without the old row (set REPLICA IDENTITY FULL on the table)")
        event = mapping.event.build(row)
        numbers = {f.name for f in mapping.event.fields if f.role == "property" and f.type in NUMERIC_TYPES}
        event["properties"] = {k: v for k, v in event["properties"].items() if k not in numbers} | {"deleted": True}
        event["messageId"] = f"cdc-{_digest(*ident)}"
        event["sourceVersion"] = _iso_ms(change.ts_ms)
        return event
    # unset: the key columns (and the old row where the replica identity gives it) find the profile.
    record = {**(row or {}), **(change.key if isinstance(change.key, Mapping) else {})}
    event = mapping.event.build(record, unset_traits=True)
    # Deletes are never re-read by a snapshot, so their log position is a stable version.
    event["timestamp"] = _iso_ms(change.ts_ms)
    event["messageId"] = f"cdc-{_digest(*ident, b'delete', str(change.lsn or change.ts_ms).encode())}"
    return event
