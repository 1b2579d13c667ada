"""Identity-resolution rules: which identifier types exist, how strong they are, how many a profile may hold.

The rules are data (``rules.yaml``) so that an operator can tune limits per deployment without a code
change; this module validates them at load time, because a typo in a limit would otherwise surface as a
silent over-merge weeks later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from identity.normalise import Blocklist, normalise_value
from identity.profile_id import UNKEYED, ProfileIds

__all__ = ["BUILTIN_TYPES", "DEFAULT_RULES_PATH", "IdentifierType", "IdentityRules", "Summary"]

DEFAULT_RULES_PATH = Path(__file__).with_name("rules.yaml")

# Types whose values come from fixed Segment fields (see identity.extract); every other type names a trait.
BUILTIN_TYPES = frozenset({"user_id", "anonymous_id", "email", "phone", "device_id", "advertising_id"})

# Per identifier type, the sorted distinct values known in a component (see identity.graph).
Summary = Mapping[str, list[str]]


class IdentifierType(BaseModel):
    """One kind of identifier (``user_id``, ``email``, a custom ``loyalty_id``...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    # Lower number = stronger. Decides the primary identifier of an event (the profile the event lands on).
    priority: int
    # Max distinct values of this type per profile; None = bounded only by max_identifiers_per_profile.
    limit: int | None = Field(default=None, ge=1)
    # "builtin" (fixed Segment field) or the trait name carrying the value.
    source: str = "builtin"
    normalise: Literal["email", "phone", "lowercase", "none"] = "none"

    @field_validator("name")
    @classmethod
    def _name_is_key_safe(cls, name: str) -> str:
        # Node keys are "type:value"; a colon in the type would make keys ambiguous.
        if not name or ":" in name or name != name.strip():
            raise ValueError(f"identifier type name {name!r} must be non-empty, without ':' or spaces")
        return name

    @model_validator(mode="after")
    def _builtin_exists(self) -> IdentifierType:
        if self.source == "builtin" and self.name not in BUILTIN_TYPES:
            raise ValueError(
                f"type {self.name!r} has source 'builtin' but only {sorted(BUILTIN_TYPES)} are built in; "
                "give custom types the trait name as source"
            )
        if not self.source:
            raise ValueError(f"type {self.name!r}: empty source")
        return self


class IdentityRules(BaseModel):
    """The full rule set: identifier types, the placeholder blocklist and the global per-profile cap."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    types: dict[str, IdentifierType]
    blocklist: Blocklist = Field(default_factory=Blocklist)
    # Max identifiers in one profile, also the max number of links one identifier node keeps: bounds the
    # state per node and the fan-out of one message (merge storms).
    max_identifiers_per_profile: int = Field(default=1000, ge=1)
    # Region used to read national-format phone numbers such as "(415) 555-2671".
    default_phone_region: str = "US"
    # How a component's label becomes its profile id (identity/profile_id.py). Not from the YAML (only an instance
    # validates, and it is never dumped): it holds the install's secret key, and the stitcher sets it from the
    # install's recorded choice (``with_profile_ids``).
    profile_ids: ProfileIds = Field(default=UNKEYED, exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        """Let the YAML omit ``name``: the mapping key is the name (and must agree if both are given)."""
        if isinstance(data, Mapping) and isinstance(data.get("types"), Mapping):
            types: dict[str, Any] = {}
            for key, spec in data["types"].items():
                if isinstance(spec, Mapping):
                    if spec.get("name", key) != key:
                        raise ValueError(f"type {key!r} declares a different name {spec['name']!r}")
                    spec = {**spec, "name": key}
                types[key] = spec
            data = {**data, "types": types}
        return data

    @model_validator(mode="after")
    def _check(self) -> IdentityRules:
        if not self.types:
            raise ValueError("identity rules define no identifier types")
        for key, spec in self.types.items():
            if spec.name != key:
                raise ValueError(f"type {key!r} declares a different name {spec.name!r}")
        return self

    # ----------------------------------------------------------------------------------------- loading

    @classmethod
    def load(cls, path: str | Path | None = None) -> IdentityRules:
        """Load rules from a YAML file; ``None`` loads the packaged defaults (``identity/rules.yaml``)."""
        source = DEFAULT_RULES_PATH if path is None else Path(path)
        with source.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: identity rules must be a YAML mapping")
        return cls.model_validate(data)

    def with_profile_ids(self, profile_ids: ProfileIds) -> IdentityRules:
        """These rules, naming profiles with ``profile_ids`` (a copy: loaded rules are shared)."""
        return self.model_copy(update={"profile_ids": profile_ids})

    # ----------------------------------------------------------------------------------------- queries

    def profile_id(self, label: tuple[int, str]) -> str:
        """Profile id of a component with this label (``(first_seen_ms, node_key)``, see identity.graph).

        Depends on the node key only, not on ``first_seen_ms``: a late event that lowers the oldest node's first_seen
        changes the label but must not rename the profile."""
        return self.profile_ids(label[1])

    def priority(self, id_type: str) -> int:
        """Priority of a type (lower = stronger). Unknown types (e.g. from old state) rank last."""
        spec = self.types.get(id_type)
        return spec.priority if spec is not None else 1_000_000

    def limit(self, id_type: str) -> int | None:
        """Configured per-profile limit of a type; None = only the global cap applies."""
        spec = self.types.get(id_type)
        return spec.limit if spec is not None else None

    def effective_limit(self, id_type: str) -> int:
        """The limit actually enforced: the type's own limit, never above the global cap."""
        return self._limits.get(id_type, self.max_identifiers_per_profile)

    @cached_property
    def _limits(self) -> dict[str, int]:
        # Read on every link decision and summary union: a dict lookup, not two model lookups per call.
        cap = self.max_identifiers_per_profile
        return {name: cap if spec.limit is None else min(spec.limit, cap) for name, spec in self.types.items()}

    @cached_property
    def fingerprint(self) -> str:
        """A short digest of the whole rule set: a record whose producer computed its identifiers (the stitch
        hint, streams.keys) is trusted only by a worker whose rules have the same digest."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    @cached_property
    def trait_types(self) -> tuple[tuple[str, str], ...]:
        """(type, trait name) of every custom identifier type, the ones read from an event's traits."""
        return tuple((name, spec.source) for name, spec in self.types.items() if spec.source != "builtin")

    @cached_property
    def normalisers(self) -> dict[str, str]:
        """Type -> the name of its normaliser: what a lookup applies to the identifier it is given."""
        return {name: spec.normalise for name, spec in self.types.items()}

    @cached_property
    def identifier_value(self) -> Callable[[str, str], str | None]:
        """``identifier_value(id_type, text)``: the canonical value of an identifier of a known type, or None when
        it is a placeholder or cannot be normalised (checked before and after normalisation).

        Cached per rule set: a person's few identifiers come back with every one of their events, and an e-mail
        or phone normalisation plus two blocklist checks cost more than the lookup."""
        kinds = self.normalisers
        blocked = self.blocklist.matches
        region = self.default_phone_region

        @lru_cache(maxsize=1 << 16)
        def identifier_value(id_type: str, text: str) -> str | None:
            if blocked(text):
                return None
            value = normalise_value(text, kinds[id_type], region)
            if value is None or blocked(value):
                return None
            return value

        return identifier_value

    def is_blocked(self, value: str) -> bool:
        """True if ``value`` is a placeholder that must never identify anybody."""
        return self.blocklist.matches(value)

    def violations(self, summary: Summary) -> list[str]:
        """The limits a component summary breaks: type names, plus ``max_identifiers`` for the total."""
        limits, cap = self._limits, self.max_identifiers_per_profile
        broken = []
        total = 0
        for id_type, values in summary.items():
            total += len(values)
            if len(values) > limits.get(id_type, cap):
                broken.append(id_type)
        if total > cap:
            broken.append("max_identifiers")
        return sorted(broken) if broken else broken

    def link_violations(self, summary_a: Summary, summary_b: Summary) -> list[str]:
        """The limits that joining the two components would break (empty list = the link is allowed)."""
        return self.violations(self.union(summary_a, summary_b))

    def allows_link(self, summary_a: Summary, summary_b: Summary) -> bool:
        """Whether two components may be joined without any type exceeding its limit.

        Summaries hold up to ``limit + 1`` values per type, so an exceeded limit is always visible even
        though summaries are capped.
        """
        return not self.link_violations(summary_a, summary_b)

    def union(self, summary_a: Summary, summary_b: Summary) -> dict[str, list[str]]:
        """Join of two summaries: per type the sorted union, capped at ``effective_limit + 1`` values.

        Keeping the *smallest* values makes the cap a proper join (commutative, associative, idempotent),
        so every node of a component converges to the same summary in any delivery order, and one value
        beyond the limit is kept so that a violation is still detectable.
        """
        limits, cap = self._limits, self.max_identifiers_per_profile
        out: dict[str, list[str]] = {}
        for id_type in sorted(summary_a.keys() | summary_b.keys()):
            a, b = summary_a.get(id_type), summary_b.get(id_type)
            # Both sides are sorted (every summary is), so a type on one side only needs no sort.
            if not b or a == b:
                merged = a or []
            elif not a:
                merged = b
            else:
                # Usually one side brings a value or two the other lacks: sorting the longer list plus those
                # (two sorted runs) is cheaper than sorting the union of two sets.
                if len(a) < len(b):
                    a, b = b, a
                seen = set(a)
                extra = [value for value in b if value not in seen]
                merged = sorted(a + extra) if extra else a
            if merged:
                out[id_type] = merged[: limits.get(id_type, cap) + 1]  # a copy: never the caller's list
        return out
