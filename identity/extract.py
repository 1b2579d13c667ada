"""Pull the identifiers out of a Segment-spec event.

This is the single place that knows which event fields identify a person (the list is in README.md,
"Identity resolution"). Everything downstream (the graph, the sinks, the profile API) only sees
normalised ``type:value`` keys, so a new source field is a change here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from identity.normalise import to_text
from identity.rules import IdentityRules

__all__ = ["Identifier", "extract_identifiers", "identifier_keys", "normalise_identifier_traits", "primary_identifier"]


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


def _mapping(value: Any) -> Mapping[str, Any] | None:
    """``value`` if it is a mapping (dicts first: the common, cheap case), else None (events are untrusted)."""
    return value if type(value) is dict or isinstance(value, Mapping) else None


def _raw_values(event: Mapping[str, Any], rules: IdentityRules) -> tuple[tuple[str, Any], ...]:
    """(type, raw value) for every place an identifier sits in the event (absent places left out)."""
    get = event.get
    user_id = get("userId")
    found: list[tuple[str, Any]] = []
    if user_id is not None:
        found.append(("user_id", user_id))
    anonymous_id = get("anonymousId")
    if anonymous_id is not None:
        found.append(("anonymous_id", anonymous_id))
    # An alias call says "previousId and userId are the same person". previousId is usually the
    # anonymous id (or an old guest id) the person had before signing up, so it is treated as an
    # anonymous_id; when a client sends previousId == userId it is the user id itself and adds nothing.
    # An alias from one user id to another must therefore go through an identify with both ids as
    # traits, never silently merging two user_ids (which the user_id limit exists to prevent).
    previous_id = get("previousId")
    if previous_id is not None and to_text(previous_id) != to_text(user_id):
        found.append(("anonymous_id", previous_id))
    context = _mapping(get("context"))
    # Identify calls carry traits at the top level, every other call in context.traits; both count.
    all_traits = [t for t in (_mapping(get("traits")), context and _mapping(context.get("traits"))) if t]
    trait_types = rules.trait_types
    for traits in all_traits:
        traits_get = traits.get
        for id_type, trait in (("email", "email"), ("phone", "phone"), *trait_types):
            value = traits_get(trait)
            if value is not None:
                found.append((id_type, value))
    device = context and _mapping(context.get("device"))
    if device:
        for id_type, field in (("device_id", "id"), ("advertising_id", "advertisingId")):
            value = device.get(field)
            if value is not None:
                found.append((id_type, value))
    return tuple(found)


def normalise_identifier_traits(event: dict[str, Any], rules: IdentityRules) -> None:
    """Rewrite, in place, the traits that are identifiers (``email``, ``phone``, the custom types' traits) to the
    value their identifier has, so a profile's traits show ``alice.martin@example.com`` where the event said
    ``"  Alice.Martin@Example.COM "``. Placeholders and values that cannot be normalised are left as sent (the
    identifier is dropped anyway), and so are non-text values (a numeric loyalty id stays a number)."""
    context = _mapping(event.get("context"))
    identifier_value = rules.identifier_value
    types = rules.types
    for traits in (event.get("traits"), context and context.get("traits")):
        if type(traits) is not dict:
            continue
        for id_type, trait in (("email", "email"), ("phone", "phone"), *rules.trait_types):
            value = traits.get(trait)
            if type(value) is not str or id_type not in types:
                continue
            normalised = identifier_value(id_type, value)
            if normalised is not None:
                traits[trait] = normalised


def _identifiers(raw: tuple[tuple[str, Any], ...], rules: IdentityRules) -> list[Identifier]:
    found: set[Identifier] = set()
    types = rules.types
    identifier_value = rules.identifier_value
    for id_type, value in raw:
        if id_type not in types:
            continue
        text = to_text(value)
        if text is None:
            continue
        normalised = identifier_value(id_type, text)
        if normalised is not None:
            found.add(Identifier(id_type, normalised))
    return sorted(found, key=lambda ident: (rules.priority(ident.id_type), ident.id_type, ident.value))


def extract_identifiers(event: Mapping[str, Any], rules: IdentityRules) -> list[Identifier]:
    """All usable identifiers of an event: normalised, junk removed, deduplicated, strongest first.

    Types not present in ``rules`` are skipped (a deployment can switch off, say, advertising ids by
    deleting the type). Values are normalised with the type's normaliser and checked against the
    blocklist both before and after normalisation, so ``" NULL "`` and ``'"null"'`` are both caught.
    Sorted by (priority, value) so the first element is the event's primary identifier and the order
    is deterministic for the same event, whatever the field order in the JSON.
    """
    return _identifiers(_raw_values(event, rules), rules)


def identifier_keys(event: Mapping[str, Any], rules: IdentityRules) -> tuple[str, ...]:
    """The keys of ``extract_identifiers(event, rules)``, strongest first: the stitcher's form.

    Cached on the event's raw identifier values: a person's events repeat the same few, and the lookups are
    cheaper than normalising, checking and sorting them again.
    """
    raw = _raw_values(event, rules)
    try:
        return _keys_of(rules)(raw)
    except TypeError:  # an unhashable value (an object where an id belongs): nothing to cache
        return tuple(ident.key for ident in _identifiers(raw, rules))


_KEY_CACHES: dict[int, tuple[IdentityRules, Callable[[tuple[tuple[str, Any], ...]], tuple[str, ...]]]] = {}


def _keys_of(rules: IdentityRules) -> Callable[[tuple[tuple[str, Any], ...]], tuple[str, ...]]:
    """The cached raw-values -> keys function of one rule set (the rule set is kept alive with it)."""
    entry = _KEY_CACHES.get(id(rules))
    if entry is None or entry[0] is not rules:

        @lru_cache(maxsize=1 << 16)
        def keys(raw: tuple[tuple[str, Any], ...]) -> tuple[str, ...]:
            return tuple(ident.key for ident in _identifiers(raw, rules))

        entry = _KEY_CACHES[id(rules)] = (rules, keys)
    return entry[1]


def primary_identifier(ids: list[Identifier]) -> Identifier | None:
    """The strongest identifier (first of a list from ``extract_identifiers``), or None if there is none."""
    return ids[0] if ids else None
