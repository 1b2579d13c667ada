"""Mappings: which field of a source record becomes which part of a Segment event (pure functions).

Shared by the pull sources: a database row from change data capture (`schemas/cdc.py`) and a webhook payload
(`schemas/webhooks.py`) are both a JSON object whose fields a mapping names. One grammar serves both, so a user
who can read one mapping file can write the other. The files are YAML; the shipped ones are in
`schemas/mappings/` and README "Pull sources" documents the format.

Each entry of ``fields`` is ``PATH: ROLE [NAME] [TYPE]``:

* ``PATH`` is a field name, dotted for nested objects (``data.object.email``);
* ``ROLE`` is one of
  ``identifier NAME`` (``user_id`` -> ``userId``, ``anonymous_id`` -> ``anonymousId``, any other identifier
  type of the identity rules, e.g. ``email``, ``phone``, ``crm_id``, -> the trait of that name, which is where
  the stitcher reads it),
  ``trait [NAME]`` (``traits`` of an identify, ``context.traits`` of a track),
  ``property [NAME]`` (``properties``; track only),
  ``timestamp`` (the event's ``timestamp``);
  NAME defaults to the last part of the path;
* ``TYPE`` converts the value: ``auto`` (as given, the default), ``text``, ``number``, ``integer``, ``boolean``,
  ``timestamp`` (ISO-8601 text, or milliseconds since 1970 as Kafka Connect sends a ``timestamp`` column),
  ``date`` (ISO date, or days since 1970 as Kafka Connect sends a ``date`` column), ``epoch_s`` and
  ``epoch_ms`` (numbers of seconds or milliseconds), ``minor_units`` (an amount in cents or the like, divided
  by 100 unless the ``currency`` beside it has no minor unit), ``json`` (objects and arrays kept whole).

Fields the mapping does not name are dropped: a source table or payload often holds more than a CDP should
keep. A field the record lacks is left out. A null value leaves an identifier or a property out, and sets a
trait to null, which removes the trait from the profile (the row no longer has it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

import orjson
import yaml

ROLES: Final = ("identifier", "trait", "property", "timestamp")
TYPES: Final = (
    "auto",
    "text",
    "number",
    "integer",
    "boolean",
    "timestamp",
    "date",
    "epoch_s",
    "epoch_ms",
    "minor_units",
    "json",
)
NUMERIC_TYPES: Final = frozenset({"number", "integer", "minor_units"})
# ISO 4217 currencies without a minor unit (an amount of 500 JPY is 500, not 5.00), as payment APIs list them.
ZERO_DECIMAL_CURRENCIES: Final = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
EventKind = Literal["identify", "track"]


class MappingError(ValueError):
    """A record the mapping cannot turn into an event, or a mapping file that is wrong; names the field."""


@dataclass(frozen=True, slots=True)
class Field:
    path: tuple[str, ...]
    role: str
    name: str
    type: str = "auto"

    @property
    def label(self) -> str:
        return ".".join(self.path)


def parse_field(path: str, spec: str) -> Field:
    """``"identifier email"``, ``"property revenue number"``, ``"timestamp"`` -> a Field."""
    words = str(spec).split()
    if not words or words[0] not in ROLES:
        raise MappingError(f"fields.{path}: must start with one of {', '.join(ROLES)}, got {spec!r}")
    role, rest = words[0], words[1:]
    # The last word is the type when it names one ("trait score number", "trait number"): a trait that is
    # itself called like a type is written with its type ("trait date auto").
    kind = rest.pop() if rest and rest[-1] in TYPES else "auto"
    if role == "timestamp":
        if rest:
            raise MappingError(f"fields.{path}: timestamp takes only a type, got {spec!r}")
        return Field(tuple(path.split(".")), role, "timestamp", kind if kind != "auto" else "timestamp")
    if len(rest) > 1:
        raise MappingError(f"fields.{path}: expected ROLE [NAME] [TYPE], got {spec!r}")
    parts = tuple(path.split("."))
    name = rest[0] if rest else parts[-1]
    if role == "identifier" and not rest:
        raise MappingError(f"fields.{path}: an identifier needs its type, e.g. 'identifier email'")
    return Field(parts, role, name, kind)


MISSING: Final = object()


def _get(record: Any, path: tuple[str, ...]) -> tuple[Any, Any]:
    """(value, the object holding it) at a dotted path; (MISSING, None) where the path does not exist."""
    parent: Any = None
    current = record
    for part in path:
        if not isinstance(current, Mapping) or part not in current:
            return MISSING, None
        parent, current = current, current[part]
    return current, parent


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def convert(value: Any, kind: str, label: str, parent: Any = None) -> Any:
    """One value in the type a mapping asks for; MappingError names the field when it does not fit."""
    if value is None or kind in ("auto", "json"):
        return value
    try:
        if kind == "text":
            return value if isinstance(value, str) else orjson.dumps(value).decode()
        if kind in ("number", "integer", "minor_units"):
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError("not a number")
            number = float(str(value).strip().replace(",", ".")) if isinstance(value, str) else float(value)
            if not math.isfinite(number):
                raise ValueError("not a finite number")
            if kind == "integer":
                return int(number)
            if kind == "minor_units":
                currency = str(parent.get("currency") or "").lower() if isinstance(parent, Mapping) else ""
                return number if currency in ZERO_DECIMAL_CURRENCIES else number / 100
            return number
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "t", "1", "yes", "y"):
                return True
            if text in ("false", "f", "0", "no", "n"):
                return False
            raise ValueError("not a boolean")
        if kind == "epoch_s" or kind == "epoch_ms":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("not a number")
            seconds = float(value) if kind == "epoch_s" else float(value) / 1000
            return _iso(_EPOCH + timedelta(seconds=seconds))
        if kind == "timestamp":
            if isinstance(value, bool):
                raise ValueError("not a timestamp")
            if isinstance(value, int | float):  # Kafka Connect's Timestamp: milliseconds since 1970
                return _iso(_EPOCH + timedelta(milliseconds=float(value)))
            parsed = datetime.fromisoformat(str(value).strip().replace(" ", "T", 1))
            return _iso(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
        if kind == "date":
            if isinstance(value, bool):
                raise ValueError("not a date")
            if isinstance(value, int):  # Kafka Connect's Date: days since 1970
                return (date(1970, 1, 1) + timedelta(days=value)).isoformat()
            return date.fromisoformat(str(value).strip()[:10]).isoformat()
    except (ValueError, TypeError, OverflowError) as exc:
        raise MappingError(f"{label}: {exc} ({value!r} as {kind})") from None
    raise MappingError(f"{label}: unknown type {kind}")


@dataclass(frozen=True, slots=True)
class EventMapping:
    """How one record becomes one Segment event."""

    kind: EventKind
    event: str | None
    fields: tuple[Field, ...]

    @classmethod
    def parse(cls, spec: Mapping[str, Any], where: str = "") -> EventMapping:
        kind = spec.get("type")
        if kind not in ("identify", "track"):
            raise MappingError(f"{where}type: must be identify or track")
        event = spec.get("event")
        if kind == "track" and not (isinstance(event, str) and event.strip()):
            raise MappingError(f"{where}event: a track mapping needs the event name")
        raw_fields = spec.get("fields")
        if not isinstance(raw_fields, Mapping) or not raw_fields:
            raise MappingError(f"{where}fields: must map field paths to roles")
        fields = tuple(parse_field(str(path), str(role)) for path, role in raw_fields.items())
        if kind == "identify" and any(f.role == "property" for f in fields):
            raise MappingError(f"{where}fields: an identify has traits, not properties")
        if sum(f.role == "timestamp" for f in fields) > 1:
            raise MappingError(f"{where}fields: at most one timestamp")
        if not any(f.role == "identifier" for f in fields):
            raise MappingError(f"{where}fields: at least one identifier, or the events belong to nobody")
        return cls(kind, event if kind == "track" else None, fields)

    @property
    def has_timestamp(self) -> bool:
        return any(f.role == "timestamp" for f in self.fields)

    def build(self, record: Mapping[str, Any], *, unset_traits: bool = False) -> dict[str, Any]:
        """The Segment event of one record (no messageId: the caller derives it from the record's identity).

        ``unset_traits``: every trait becomes null (the record was deleted, so what it said is no longer
        true), while identifiers keep their values so that the event still lands on the person's profile.
        """
        event: dict[str, Any] = {"type": self.kind}
        if self.event:
            event["event"] = self.event
        traits: dict[str, Any] = {}
        properties: dict[str, Any] = {}
        for f in self.fields:
            raw, parent = _get(record, f.path)
            if raw is MISSING:
                if f.role == "trait" and unset_traits:
                    traits[f.name] = None
                continue  # a field the record does not have says nothing (a null says "no value")
            value = convert(raw, f.type, f.label, parent)
            if f.role == "timestamp":
                if value is not None:
                    event["timestamp"] = value
            elif f.role == "identifier":
                if value is None or (isinstance(value, str) and not value.strip()):
                    continue
                if f.name == "user_id":
                    event["userId"] = value
                elif f.name == "anonymous_id":
                    event["anonymousId"] = value
                else:
                    traits[f.name] = value
            elif f.role == "trait":
                traits[f.name] = None if unset_traits else value
            elif value is not None:
                properties[f.name] = value
        if self.kind == "identify":
            event["traits"] = traits
        else:
            event["properties"] = properties
            if traits:
                event["context"] = {"traits": traits}
        return event


def load_yaml(text: str) -> Any:
    """A mapping file's content; MappingError when it is not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"mapping: not valid YAML ({exc})") from None


def canonical(value: Any) -> bytes:
    """JSON with sorted keys: the same content always gives the same bytes (for derived message ids)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
