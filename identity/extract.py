"""Pull the identifiers out of a Segment-spec event.

This is the single place that knows which event fields identify a person (see CONTRACT.md, "Where
identifiers come from"). Everything downstream (the graph, the sinks, the profile API) only sees
normalised ``type:value`` keys, so a new source field is a change here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from identity.normalise import normalise_value, to_text
from identity.rules import IdentityRules

__all__ = ["Identifier", "extract_identifiers", "primary_identifier"]


@dataclass(frozen=True, slots=True)
class Identifier:
    """One normalised identifier. ``key`` (``"email:ann@example.com"``) names its node in the graph."""

    id_type: str
    value: str

    @property
    def key(self) -> str:
        return f"{self.id_type}:{self.value}"

    @classmethod
    def from_key(cls, key: str) -> Identifier:
        """Inverse of ``key``. Splits on the first colon: type names never contain one, values may."""
        id_type, sep, value = key.partition(":")
        if not sep or not id_type:
            raise ValueError(f"not an identifier key: {key!r}")
        return cls(id_type, value)


def _get(mapping: Any, *path: str) -> Any:
    """Nested lookup that tolerates missing keys and non-dict intermediates (events are untrusted)."""
    current = mapping
    for part in path:
        if type(current) is not dict and not isinstance(current, Mapping):  # dicts first: the common, cheap case
            return None
        current = current.get(part)
    return current


def _raw_sources(event: Mapping[str, Any], rules: IdentityRules) -> Iterator[tuple[str, Any]]:
    """(type, raw value) for every place an identifier may sit in the event."""
    user_id = event.get("userId")
    yield "user_id", user_id
    yield "anonymous_id", event.get("anonymousId")
    # An alias call says "previousId and userId are the same person". previousId is usually the
    # anonymous id (or an old guest id) the person had before signing up, so it is treated as an
    # anonymous_id; when a client sends previousId == userId it is the user id itself and adds nothing.
    # An alias from one user id to another must therefore go through an identify with both ids as
    # traits, never silently merging two user_ids (which the user_id limit exists to prevent).
    previous_id = event.get("previousId")
    if previous_id is not None and to_text(previous_id) != to_text(user_id):
        yield "anonymous_id", previous_id
    # Identify calls carry traits at the top level, every other call in context.traits; both count.
    for traits in (event.get("traits"), _get(event, "context", "traits")):
        if type(traits) is dict or isinstance(traits, Mapping):
            yield "email", traits.get("email")
            yield "phone", traits.get("phone")
    yield "device_id", _get(event, "context", "device", "id")
    yield "advertising_id", _get(event, "context", "device", "advertisingId")
    for spec in rules.types.values():
        if spec.source == "builtin":
            continue
        for traits in (event.get("traits"), _get(event, "context", "traits")):
            if isinstance(traits, Mapping):
                yield spec.name, traits.get(spec.source)


def extract_identifiers(event: Mapping[str, Any], rules: IdentityRules) -> list[Identifier]:
    """All usable identifiers of an event: normalised, junk removed, deduplicated, strongest first.

    Types not present in ``rules`` are skipped (a deployment can switch off, say, advertising ids by
    deleting the type). Values are normalised with the type's normaliser and checked against the
    blocklist both before and after normalisation, so ``" NULL "`` and ``'"null"'`` are both caught.
    Sorted by (priority, value) so the first element is the event's primary identifier and the order
    is deterministic for the same event, whatever the field order in the JSON.
    """
    found: set[Identifier] = set()
    for id_type, raw in _raw_sources(event, rules):
        spec = rules.types.get(id_type)
        if spec is None:
            continue
        text = to_text(raw)
        if text is None or rules.is_blocked(text):
            continue
        value = normalise_value(text, spec.normalise, rules.default_phone_region)
        if value is None or rules.is_blocked(value):
            continue
        found.add(Identifier(id_type, value))
    return sorted(found, key=lambda ident: (rules.priority(ident.id_type), ident.id_type, ident.value))


def primary_identifier(ids: list[Identifier]) -> Identifier | None:
    """The strongest identifier (first of a list from ``extract_identifiers``), or None if there is none."""
    return ids[0] if ids else None
