"""Pydantic v2 models and parsers for events in the Segment HTTP Tracking API format.

Why: the collector must accept exactly what Segment and RudderStack SDKs send, unchanged, and reject
what Segment rejects, with an answer that names the offending field. The model keeps snake_case
attributes for Python code but reads and writes Segment's camelCase names (``userId``, ``messageId``,
...), and keeps unknown top-level fields, because SDKs and customers add their own and the platform
must not silently lose data.

Validation happens in two layers:

* field types (pydantic): ids are strings or numbers (numbers become strings, as Segment does;
  objects, arrays and booleans are refused), ``traits``/``properties``/``context``/``integrations``
  are JSON objects, timestamps are ISO-8601 and become timezone-aware datetimes (naive = UTC);
* per-type rules (here, on the raw payload, so they are reported together with type errors):
  ``track`` needs ``event``; identify/track/page/screen/group need ``userId`` or ``anonymousId``;
  ``alias`` needs ``userId`` and ``previousId``; ``group`` needs ``groupId``.

Events are limited to 32 KB of serialised JSON each, like Segment's own API, so one huge event cannot
hog a Kafka partition or a ClickHouse insert.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, TypeVar

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from schemas.consent import consent_errors
from schemas.errors import BatchItemError, EventError, FieldError, format_loc, from_validation_error, join_loc

__all__ = [
    "EVENT_TYPES",
    "MAX_EVENT_BYTES",
    "EventTooLarge",
    "EventType",
    "SegmentEvent",
    "accept_batch",
    "accept_event",
    "encoded_size",
    "parse_batch",
    "parse_event",
    "parse_timestamp",
]

MAX_EVENT_BYTES: Final = 32 * 1024
"""Segment's per-event limit (32 KB); larger events are refused, not truncated."""

MIN_TIMESTAMP: Final = datetime(1900, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP: Final = datetime(2262, 1, 1, tzinfo=UTC)
"""Timestamps outside [1900, 2262) are refused: ClickHouse DateTime64(3) covers 1900-2299, and Kafka/pandas-style
nanosecond clocks end in 2262; no real event is outside, and skew arithmetic on year 1 or 9999 overflows."""

MAX_DEPTH: Final = 64
"""Deepest nesting of objects/arrays inside one event. JSON encoders have limits (orjson refuses more than 255
levels) that downstream workers hit when they re-encode the event, so a deeper event is refused at the edge."""

EventType = Literal["identify", "track", "page", "screen", "group", "alias"]
EVENT_TYPES: Final[frozenset[str]] = frozenset({"identify", "track", "page", "screen", "group", "alias"})

# Types that must say who did it (Segment: "userId or anonymousId is required").
_NEEDS_WHO: Final = frozenset({"identify", "track", "page", "screen", "group"})


class EventTooLarge(EventError):
    """A single event over the size limit: HTTP 413 rather than 400."""


# --------------------------------------------------------------------------------------------------
# field-level coercions (plain validators, so pydantic does not add its own lax conversions)
# --------------------------------------------------------------------------------------------------


def coerce_id(value: Any) -> str | None:
    """Coerce an identifier the way Segment does: strings stay, numbers become strings.

    Booleans, objects and arrays are refused: ``true`` or ``{"id": 1}`` as a user id is a client bug,
    and accepting it would later link unrelated people. Blank strings count as absent, so the
    "userId or anonymousId" rule cannot be satisfied by ``""``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise PydanticCustomError("id_type", "must be a string or a number, not a boolean")
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("id_type", "must be a finite number")
        # JSON has one number type: 42.0 is the id "42" as JavaScript would print it.
        return str(int(value)) if value.is_integer() else repr(value)
    raise PydanticCustomError("id_type", "must be a string or a number")


def _json_object(value: Any) -> dict[str, Any] | None:
    """Accept a JSON object (dict) or null; refuse arrays, strings and numbers."""
    if value is None or isinstance(value, dict):
        return value
    raise PydanticCustomError("object_type", "must be a JSON object")


def _optional_str(value: Any) -> str | None:
    """Accept a string or null, without pydantic's lax bytes-to-str conversion."""
    if value is None or isinstance(value, str):
        return value
    raise PydanticCustomError("string_type", "must be a string")


def _event_type(value: Any) -> str:
    """Accept one of the six Segment types, case-insensitively (some SDKs send "Track")."""
    if isinstance(value, str) and value.strip().lower() in EVENT_TYPES:
        return value.strip().lower()
    raise PydanticCustomError("event_type", "must be one of {types}", {"types": ", ".join(sorted(EVENT_TYPES))})


def parse_timestamp(value: Any) -> datetime | None:
    """Parse an ISO-8601 timestamp into an aware datetime; naive values are taken as UTC.

    Only strings (and datetimes, for in-process callers such as the importer) are accepted: bare
    numbers are ambiguous (seconds or milliseconds?), and Segment's spec says ISO-8601.
    Raises ``ValueError`` on anything else, so callers can report the field by name.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO-8601 timestamp: {value[:64]!r}") from None
    else:
        raise ValueError("must be an ISO-8601 timestamp string")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # Years 1 and 9999 parse, but ClickHouse's DateTime64 cannot hold them, and arithmetic on them (clock-skew
    # correction, conversion to UTC) overflows: refuse what no real event carries.
    try:
        in_utc = parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"timestamp out of range ({MIN_TIMESTAMP.year}-{MAX_TIMESTAMP.year - 1})") from None
    if not MIN_TIMESTAMP <= in_utc < MAX_TIMESTAMP:
        raise ValueError(f"timestamp out of range ({MIN_TIMESTAMP.year}-{MAX_TIMESTAMP.year - 1})")
    return parsed


def _timestamp(value: Any) -> datetime | None:
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise PydanticCustomError("timestamp", "{reason}", {"reason": str(exc)}) from None


T = TypeVar("T")

Id = Annotated[str | None, PlainValidator(coerce_id)]
JsonObject = Annotated[dict[str, Any] | None, PlainValidator(_json_object)]
OptStr = Annotated[str | None, PlainValidator(_optional_str)]
# BeforeValidator, not PlainValidator: with a plain validator pydantic 2.14 warns when dumping the
# datetime in JSON mode; here pydantic's own datetime check just accepts the aware datetime we return.
Timestamp = Annotated[datetime | None, BeforeValidator(_timestamp)]


class SegmentEvent(BaseModel):
    """One Segment-spec event (identify, track, page, screen, group or alias).

    Attributes are snake_case; input and output use Segment's camelCase names, so
    ``model_dump(mode="json", exclude_none=True)`` gives back a Segment payload (``by_alias`` is the
    default for serialisation). Unknown top-level fields are kept as extras. ``writeKey`` is read (it
    may authenticate the request) but excluded from every dump, so it is never stored or forwarded.

    Per-type rules are checked by :func:`parse_event` / :func:`parse_batch`, not by the model, so code
    can still build partial events (e.g. in tests) with ``model_validate``.
    """

    model_config = ConfigDict(
        extra="allow",
        validate_by_alias=True,
        # Segment payloads use camelCase only; a "user_id" key is an extra field, not userId.
        validate_by_name=False,
        serialize_by_alias=True,
        frozen=False,
    )

    type: Annotated[EventType, PlainValidator(_event_type)]
    message_id: Id = Field(default=None, alias="messageId")
    anonymous_id: Id = Field(default=None, alias="anonymousId")
    user_id: Id = Field(default=None, alias="userId")
    previous_id: Id = Field(default=None, alias="previousId")
    group_id: Id = Field(default=None, alias="groupId")
    event: OptStr = None
    name: OptStr = None
    category: OptStr = None
    traits: JsonObject = None
    properties: JsonObject = None
    context: JsonObject = None
    integrations: JsonObject = None
    timestamp: Timestamp = None
    original_timestamp: Timestamp = Field(default=None, alias="originalTimestamp")
    sent_at: Timestamp = Field(default=None, alias="sentAt")
    received_at: Timestamp = Field(default=None, alias="receivedAt")
    write_key: OptStr = Field(default=None, alias="writeKey", exclude=True)
    channel: OptStr = None

    def to_segment(self) -> dict[str, Any]:
        """The event as a JSON-ready Segment dict (camelCase, no nulls, no writeKey)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------------------------------
# per-type rules
# --------------------------------------------------------------------------------------------------


def _has_id(payload: dict[str, Any], key: str) -> bool:
    """True if ``payload[key]`` is a usable id, or is invalid (already reported as a type error)."""
    try:
        return coerce_id(payload.get(key)) is not None
    except PydanticCustomError:
        return True


def _rule_errors(event_type: str, payload: dict[str, Any]) -> list[FieldError]:
    """Segment's per-type required fields, checked on the raw payload.

    Checking the raw payload (not the model) lets one answer list both type errors and missing fields.
    """
    errors: list[FieldError] = []
    if event_type == "track":
        name = payload.get("event")
        if name is None or (isinstance(name, str) and not name.strip()):
            errors.append(FieldError("event", "required for track events (a non-empty string)"))
    if event_type in _NEEDS_WHO and not (_has_id(payload, "userId") or _has_id(payload, "anonymousId")):
        errors.append(FieldError("userId", "userId or anonymousId is required"))
    if event_type == "alias":
        if not _has_id(payload, "userId"):
            errors.append(FieldError("userId", "required for alias events"))
        if not _has_id(payload, "previousId"):
            errors.append(FieldError("previousId", "required for alias events"))
    if event_type == "group" and not _has_id(payload, "groupId"):
        errors.append(FieldError("groupId", "required for group events"))
    errors.extend(consent_errors(payload))
    return errors


def _known_type(payload: dict[str, Any]) -> str | None:
    raw = payload.get("type")
    if isinstance(raw, str) and raw.strip().lower() in EVENT_TYPES:
        return raw.strip().lower()
    return None


def _validate(payload: dict[str, Any], prefix: str) -> tuple[SegmentEvent | None, list[FieldError]]:
    """Validate one event dict (type already set): field types, then per-type rules."""
    event: SegmentEvent | None = None
    errors: list[FieldError] = []
    try:
        event = SegmentEvent.model_validate(payload)
    except ValidationError as exc:
        errors = from_validation_error(exc)
    event_type = _known_type(payload)
    if event_type is not None:
        reported = {e.loc for e in errors}
        errors.extend(e for e in _rule_errors(event_type, payload) if e.loc not in reported)
    if errors:
        return None, [FieldError(join_loc(prefix, e.loc), e.msg) for e in errors]
    return event, []


# How each known top-level field is checked on the fast path; anything else is an extra, kept as sent.
_ID, _STR, _OBJ, _TS = range(4)
_KINDS: Final[dict[str, int]] = {
    "messageId": _ID,
    "anonymousId": _ID,
    "userId": _ID,
    "previousId": _ID,
    "groupId": _ID,
    "event": _STR,
    "name": _STR,
    "category": _STR,
    "channel": _STR,
    "writeKey": _STR,
    "traits": _OBJ,
    "properties": _OBJ,
    "context": _OBJ,
    "integrations": _OBJ,
    "timestamp": _TS,
    "originalTimestamp": _TS,
    "sentAt": _TS,
    "receivedAt": _TS,
}
_MODEL_ATTR: Final = {
    field.alias or name: name for name, field in SegmentEvent.model_fields.items() if name != "write_key"
}


def _plain(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The canonical dict of an event whose every field already has its canonical form, else None.

    Why: nearly every SDK sends string ids, a lower-case type and objects where objects belong. For those
    events the pydantic model would only confirm what this loop sees and then be dumped back into a dict,
    about two thirds of the collector's CPU per event. Anything unusual (a numeric id, a blank string, a
    wrong type, "Track") returns None and goes through the model, which coerces or reports it. Both paths
    give the same dict (:func:`_canonical`; a property test holds them equal).
    """
    kind = payload.get("type")
    if type(kind) is not str or kind not in EVENT_TYPES:  # a list or an object is not hashable: the model says why
        return None
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if value is None:
            continue
        kind = _KINDS.get(key)
        if kind is None:
            pass
        elif kind == _ID:
            if type(value) is not str or not value.strip():
                return None
        elif kind == _STR:
            if type(value) is not str:
                return None
        elif kind == _OBJ:
            if type(value) is not dict:
                return None
        else:
            if type(value) is not str:
                return None
            try:
                value = parse_timestamp(value)
            except ValueError:
                return None
        out[key] = value
    out.pop("writeKey", None)
    return out


def _canonical(payload: dict[str, Any], event: SegmentEvent) -> dict[str, Any]:
    """The canonical dict of a validated event: the payload as sent (key order and extras kept), nulls dropped,
    ``writeKey`` removed, and the model's values for its own fields (coerced ids, lower-case type, parsed
    timestamps as aware datetimes)."""
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key == "writeKey":
            continue
        attr = _MODEL_ATTR.get(key)
        if attr is not None:
            value = getattr(event, attr)
        if value is not None:
            out[key] = value
    return out


def _accept(payload: dict[str, Any], prefix: str) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """Validate one event dict (type already set) into its canonical dict: the fast path when it applies,
    else the model (which also produces every error message)."""
    fast = _plain(payload)
    if fast is not None and not _rule_errors(fast["type"], payload):
        return fast, []
    event, errors = _validate(payload, prefix)
    if event is None:
        return None, errors
    return _canonical(payload, event), []


def encoded_size(payload: Any) -> int:
    """Bytes of ``payload`` serialised as compact JSON: what the 32 KB limit is measured on.

    orjson is used because this runs on every event; the stdlib fallback covers values orjson refuses
    (e.g. integers beyond 64 bits from non-JSON sources), erring on the side of measuring something.
    """
    try:
        return len(orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):
        try:
            return len(json.dumps(payload, default=str, separators=(",", ":")).encode())
        except (RecursionError, ValueError):
            return sys.maxsize  # cannot even be measured: certainly over any limit


def _too_deep(value: Any, limit: int) -> bool:
    """True if ``value`` nests objects/arrays more than ``limit`` levels deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


# orjson refuses to encode more than _ORJSON_MAX_DEPTH nested containers. Measuring an event inside a chain of
# (_ORJSON_MAX_DEPTH - MAX_DEPTH) one-element lists makes that refusal mean "deeper than MAX_DEPTH", so the size
# check (one orjson call, needed anyway) is also the depth check: no Python-level walk on the hot path. The chain
# is built once per thread; only its innermost list changes.
_ORJSON_MAX_DEPTH: Final = 254
_WRAP_LEVELS: Final = _ORJSON_MAX_DEPTH - MAX_DEPTH
_WRAP_BYTES: Final = 2 * _WRAP_LEVELS  # the chain's brackets in the output
_chains = threading.local()


def _measure(payload: Any) -> int | None:
    """Compact JSON size of ``payload`` in bytes, or None if it nests more than :data:`MAX_DEPTH` levels."""
    chain = getattr(_chains, "value", None)
    if chain is None:
        inner: list[Any] = []
        outer: list[Any] = inner
        for _ in range(_WRAP_LEVELS - 1):
            outer = [outer]
        chain = _chains.value = (outer, inner)
    outer, inner = chain
    inner.append(payload)
    try:
        return len(orjson.dumps(outer, default=str, option=orjson.OPT_NON_STR_KEYS)) - _WRAP_BYTES
    except (TypeError, orjson.JSONEncodeError):
        if _too_deep(payload, MAX_DEPTH):
            return None
        return encoded_size(payload)  # not too deep, but something orjson cannot encode
    finally:
        inner.clear()


def _limit_error(payload: Any, loc: str, max_bytes: int) -> FieldError | None:
    """The event's nesting depth and encoded size against the limits; an error naming the field, or None."""
    size = _measure(payload)
    if size is None:
        if isinstance(payload, dict):
            for key, value in payload.items():
                if _too_deep(value, MAX_DEPTH - 1):
                    return FieldError(
                        join_loc(loc, format_loc([str(key)])), f"nested more than {MAX_DEPTH} levels deep"
                    )
        return FieldError(loc, f"nested more than {MAX_DEPTH} levels deep")
    if size > max_bytes:
        return FieldError(loc, f"event exceeds {max_bytes} bytes")
    return None


def _checked_single(payload: Any, forced_type: str | None, max_bytes: int) -> dict[str, Any]:
    """The limits of a single event, and the endpoint's type set; raises :class:`EventError`."""
    if not isinstance(payload, dict):
        raise EventError([FieldError("", "event must be a JSON object")])
    event: dict[str, Any] = payload
    if (err := _limit_error(event, "", max_bytes)) is not None:
        raise (EventTooLarge if err.msg.startswith("event exceeds") else EventError)([err])
    if forced_type is not None:
        event = {**event, "type": forced_type}
    return event


def parse_event(
    payload: dict[str, Any], forced_type: str | None = None, *, max_bytes: int = MAX_EVENT_BYTES
) -> SegmentEvent:
    """Validate one event from ``/v1/track``, ``/v1/identify``, ... and return the model.

    ``forced_type`` is the endpoint's type: like Segment, ``POST /v1/track`` makes a track event
    whatever ``type`` the body says. Raises :class:`EventError` with every problem found.
    """
    event, errors = _validate(_checked_single(payload, forced_type, max_bytes), "")
    if event is None:
        raise EventError(errors)
    return event


def accept_event(
    payload: dict[str, Any], forced_type: str | None = None, *, max_bytes: int = MAX_EVENT_BYTES
) -> dict[str, Any]:
    """:func:`parse_event` for the collector: the canonical dict instead of the model (see :func:`_plain`).

    The dict is the payload as sent with nulls and ``writeKey`` dropped, ids as strings, the type in lower
    case and timestamps as aware datetimes (the enrichment step formats them).
    """
    event, errors = _accept(_checked_single(payload, forced_type, max_bytes), "")
    if event is None:
        raise EventError(errors)
    return event


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two JSON objects into a new one; ``override`` (the item) wins on conflicts.

    Nested objects are merged key by key (a batch-level ``context.library`` and an item-level
    ``context.page`` both survive); everything copied from ``base`` is deep-copied so items of one
    batch never share mutable dicts.
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_batch(
    payload: dict[str, Any], *, max_bytes: int = MAX_EVENT_BYTES
) -> tuple[list[SegmentEvent], list[BatchItemError]]:
    """Validate a ``/v1/batch`` body item by item.

    Returns the valid events (in order) and one :class:`BatchItemError` per rejected item, so one bad
    event does not cost the client the rest of its queue (SDKs would otherwise retry the whole batch
    forever). Batch-level ``context`` and ``integrations`` are merged into each item (the item wins),
    and a batch-level ``sentAt`` (what analytics-node/python send) fills items that have none, so
    clock-skew correction works for them. The 32 KB limit is measured on each item as sent, before the
    merge. Raises :class:`EventError` when the envelope itself is wrong (``batch`` not an array,
    batch-level ``context`` not an object, unparseable batch-level ``sentAt``).
    """
    return _batch(payload, max_bytes, _validate)


def accept_batch(
    payload: dict[str, Any], *, max_bytes: int = MAX_EVENT_BYTES
) -> tuple[list[dict[str, Any]], list[BatchItemError]]:
    """:func:`parse_batch` for the collector: canonical dicts (as :func:`accept_event`) instead of models."""
    return _batch(payload, max_bytes, _accept)


def _batch(
    payload: dict[str, Any],
    max_bytes: int,
    validate: Callable[[dict[str, Any], str], tuple[T | None, list[FieldError]]],
) -> tuple[list[T], list[BatchItemError]]:
    if not isinstance(payload, dict):
        raise EventError([FieldError("", "body must be a JSON object")], summary="invalid batch")
    items = payload.get("batch")
    envelope: list[FieldError] = []
    if not isinstance(items, list):
        envelope.append(FieldError("batch", "must be an array of events"))
    shared: dict[str, dict[str, Any]] = {}
    for key in ("context", "integrations"):
        value = payload.get(key)
        if value is None:
            continue
        if isinstance(value, dict):
            if _too_deep(value, MAX_DEPTH - 1):
                envelope.append(FieldError(key, f"nested more than {MAX_DEPTH} levels deep"))
            shared[key] = value
        else:
            envelope.append(FieldError(key, "must be a JSON object"))
    sent_at = payload.get("sentAt")
    try:
        parse_timestamp(sent_at)
    except ValueError as exc:
        envelope.append(FieldError("sentAt", str(exc)))
    if envelope or not isinstance(items, list):
        raise EventError(envelope, summary="invalid batch")

    events: list[T] = []
    failures: list[BatchItemError] = []
    for index, item in enumerate(items):
        prefix = f"batch[{index}]"
        if not isinstance(item, dict):
            failures.append(BatchItemError(index, [FieldError(prefix, "event must be a JSON object")]))
            continue
        if (err := _limit_error(item, prefix, max_bytes)) is not None:
            failures.append(BatchItemError(index, [err]))
            continue
        merged = item
        if shared or sent_at is not None:
            merged = dict(item)
            for key, value in shared.items():
                own = merged.get(key)
                if own is None:
                    merged[key] = copy.deepcopy(value)
                elif isinstance(own, dict):
                    merged[key] = _merge(value, own)
                # a non-object item value is left alone and reported by validation
            if sent_at is not None and merged.get("sentAt") is None:
                merged["sentAt"] = sent_at
        event, errors = validate(merged, prefix)
        if event is None:
            failures.append(BatchItemError(index, errors))
        else:
            events.append(event)
    return events, failures
