"""Audience definitions: the rule language marketers and ad systems use, as pydantic v2 models.

Why a schema of its own: an audience definition is stored, shown back in the API, compiled to SQL
(:mod:`sinks.audience_sql`) and evaluated by the stream. All of those must agree on what a rule means, and
a rule that cannot be evaluated must be refused when it is created (HTTP 422), with the JSON path of the
problem (``rule.all[2].where[0].op``), never later when the compiler or the stream meets it.

An audience::

    {"name": "Pricing viewers who did not buy", "scope": "profile",
     "rule": {"all": [
         {"type": "page", "where": [{"property": "path", "op": "eq", "value": "/pricing"}], "within_days": 7},
         {"not": {"event": "Order Completed", "type": "track"}}
     ]}}

A rule is one of these shapes (the shape, i.e. which keys are present, says which one):

* ``{"all": [RULE, ...]}``: every sub-rule holds (AND). See :class:`AllRule`.
* ``{"any": [RULE, ...]}``: at least one holds (OR). See :class:`AnyRule`.
* ``{"not": RULE}``: the sub-rule does not hold. See :class:`NotRule`.
* ``{"trait": NAME, "op": OP, "value": V}``: a profile trait (profile scope only). See :class:`TraitRule`.
* ``{"group_trait": NAME, "op": OP, "value": V}``: a trait of a group (account, household) the profile belongs to
  (profile scope only). See :class:`GroupTraitRule`.
* ``{"computed": NAME, "op": OP, "value": V}``: a computed field. See :class:`ComputedRule`.
* ``{"event": ..., "type": ..., "where": [...], "within_days": N, "count": {...}}``: behaviour, i.e. how many
  matching events someone has. See :class:`BehaviourRule`.

OP is one of ``eq, neq, gt, gte, lt, lte, in, contains, exists`` (see :data:`Op` for the exact meaning).

Scopes:

* ``profile``: members are unified profiles (``profile_id``); every shape is available.
* ``anonymous``: members are the DMP side's anonymous ids and device ids (``anonymous_id:abc``,
  ``device_id:xyz``). Only non-personal data may be used there: traits are refused (they hold e-mails, names,
  phones), so are event properties named like personal data (:data:`PII_NAMES`), and the computed fields are
  those of the ``anonymous_profiles`` table (:data:`ANONYMOUS_COMPUTED`).

Purpose (``purpose``): what the audience is used for, one of the consent purposes (:data:`PURPOSES`:
``necessary``, ``analytics``, ``personalization``, ``advertising``). A member needs consent for it
(schemas/consent.py; ``necessary`` needs none). Without one, a profile audience is ``personalization`` and an
anonymous one ``advertising`` (:func:`default_purpose`); the DMP side serves advertising only, so an anonymous
audience cannot declare another purpose.

Limits (so one definition cannot produce unbounded SQL): nesting depth :data:`MAX_DEPTH`, at most
:data:`MAX_RULES` rules in one definition, :data:`MAX_WHERE` conditions per behaviour rule and
:data:`MAX_IN_VALUES` values in an ``in`` list.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, Protocol, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.consent import ADVERTISING
from schemas.errors import FieldError, format_loc

__all__ = [
    "ANONYMOUS_COMPUTED",
    "FIELD_NAME_PATTERN",
    "MAX_DEPTH",
    "MAX_IN_VALUES",
    "MAX_RULES",
    "MAX_WHERE",
    "OPS",
    "PII_NAMES",
    "PROFILE_COMPUTED",
    "AllRule",
    "AnyRule",
    "AudienceCreate",
    "BehaviourRule",
    "ComputedKind",
    "ComputedRule",
    "Condition",
    "CountCondition",
    "GroupTraitRule",
    "NotRule",
    "Op",
    "Purpose",
    "Rule",
    "RuleError",
    "Scope",
    "TraitRule",
    "count_includes_zero",
    "default_purpose",
    "effective_count",
    "is_pii_path",
    "parse_audience",
    "parse_instant",
    "rule_event_names",
    "rule_to_dict",
    "rule_uses_time_window",
    "rule_window_days",
    "scope_problems",
    "validate_rule",
]

Scope = Literal["profile", "anonymous"]
"""``profile``: members are profile ids. ``anonymous``: members are ``anonymous_id:...`` / ``device_id:...``."""

Purpose = Literal["necessary", "analytics", "personalization", "advertising"]
"""The consent purpose an audience serves (schemas/consent.py PURPOSES)."""


def default_purpose(scope: str) -> str:
    """The purpose of an audience that declares none (every audience made before purposes existed)."""
    return ADVERTISING if scope == "anonymous" else "personalization"


Op = Literal["eq", "neq", "gt", "gte", "lt", "lte", "in", "contains", "exists"]
"""Comparison operators.

* ``eq`` / ``neq``: equal / not equal. A number compares numerically (``"42"`` and ``42.0`` are equal),
  a string or boolean compares as text. ``neq`` is exactly ``not eq``: someone *without* the field is
  included (``{"trait": "plan", "op": "neq", "value": "pro"}`` == ``{"not": {"trait": "plan", "op": "eq",
  "value": "pro"}}``).
* ``gt``, ``gte``, ``lt``, ``lte``: a number compares numerically (values that are not numbers never match);
  a string compares as text (lexicographic, so ISO dates such as ``"2024-05-01"`` order correctly) and only
  matches when the field is present. For ``first_seen``/``last_seen`` the value is an instant.
* ``in``: ``value`` is a non-empty array; matches when the field equals one of them
  (``{"trait": "country", "op": "in", "value": ["FR", "DE"]}``).
* ``contains``: substring of a text field, or element of an array field
  (``{"property": "tags", "op": "contains", "value": "sale"}``).
* ``exists``: the field is present and not null; ``"value": false`` inverts it, ``true`` or no value is the
  plain test (``{"trait": "email", "op": "exists"}``).
"""

CountOp = Literal["eq", "neq", "gt", "gte", "lt", "lte"]
EventKind = Literal["track", "page", "screen", "identify"]
ComputedKind = Literal["number", "datetime", "text"]

OPS: Final[tuple[str, ...]] = ("eq", "neq", "gt", "gte", "lt", "lte", "in", "contains", "exists")

FIELD_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)*$"
"""Trait names and property paths (``plan``, ``address.city``). Anything else is refused: names never reach
SQL as identifiers (they are bound parameters), but a narrow alphabet keeps definitions readable and makes
lookalike or control-character names impossible."""

MAX_DEPTH: Final = 10
"""Deepest nesting of all/any/not (the top rule is level 1)."""
MAX_RULES: Final = 200
"""Rules in one definition, counting combinators and leaves."""
MAX_WHERE: Final = 20
"""Property conditions in one behaviour rule."""
MAX_IN_VALUES: Final = 1000
"""Values in one ``in`` list."""
MAX_VALUE_CHARS: Final = 4096
"""Length of one string value."""

PROFILE_COMPUTED: Final[Mapping[str, ComputedKind]] = {
    "revenue": "number",  # sum of properties.revenue of "Order Completed" events
    "orders": "number",  # number of "Order Completed" events
    "events": "number",  # number of events
    "first_seen": "datetime",
    "last_seen": "datetime",
    "last_channel": "text",  # channel of the latest event: online, mobile, offline
}
"""Computed fields of profile scope (columns of ``profiles``) and their kinds."""

ANONYMOUS_COMPUTED: Final[Mapping[str, ComputedKind]] = {
    "events": "number",
    "pages": "number",
    "screens": "number",
    "first_seen": "datetime",
    "last_seen": "datetime",
    "device_type": "text",
    "os": "text",
    "browser": "text",
    "country": "text",  # ISO 3166 alpha-2, upper case
    "region": "text",
}
"""Computed fields of anonymous scope (columns of ``anonymous_profiles``) and their kinds."""

_COMPUTED_KINDS: Final[dict[str, ComputedKind]] = {**PROFILE_COMPUTED, **ANONYMOUS_COMPUTED}
_COMPUTED_BY_SCOPE: Final[dict[str, Mapping[str, ComputedKind]]] = {
    "profile": PROFILE_COMPUTED,
    "anonymous": ANONYMOUS_COMPUTED,
}

PII_NAMES: Final = frozenset({"email", "phone", "name", "firstname", "lastname", "address", "ip"})
"""Property path segments refused in anonymous scope. Compared case-insensitively with ``_`` and ``-``
removed, so ``first_name``, ``firstName`` and ``FIRST-NAME`` are all refused."""

# Instants accepted for first_seen/last_seen: 1900-01-01 .. 2299-12-31, the range of DateTime64(3).
_MIN_MS: Final = -2_208_988_800_000
_MAX_MS: Final = 10_413_791_999_999

FieldName = Annotated[str, StringConstraints(pattern=FIELD_NAME_PATTERN, max_length=256)]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
_VALUE_SCHEMA: Final[dict[str, Any]] = {
    "description": "A string, number or boolean; an array of them for `in`; true/false/omitted for `exists`.",
    "anyOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}},
        {"type": "null"},
    ],
}
# The value is checked by our own validators (its type depends on the operator and the field), so pydantic
# sees Any; the JSON schema still tells clients what to send.
Value = Annotated[Any, WithJsonSchema(_VALUE_SCHEMA)]


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------


class RuleError(ValueError):
    """An audience definition was refused; ``path`` is the JSON path of the problem.

    The API answers 422 with it. ``path`` starts at the audience payload (``rule.all[2].where[0].op``,
    ``name``), so a client can point at the offending part of what it sent.
    """

    def __init__(self, path: str, msg: str) -> None:
        self.path = path
        self.msg = msg
        super().__init__(f"{path}: {msg}" if path else msg)

    def to_field_error(self) -> FieldError:
        """The standard error item, for :func:`schemas.errors.error_body`."""
        return FieldError(loc=self.path, msg=self.msg)


def _problem(path: str, reason: str, kind: str = "rule_invalid") -> PydanticCustomError:
    """An error whose exact path is known, carried through pydantic in ``ctx`` (see :func:`_to_rule_error`)."""
    return PydanticCustomError(kind, "{path}: {reason}", {"path": path, "reason": reason})


# --------------------------------------------------------------------------------------------------
# value checks (the type of a value depends on the operator and on the field)
# --------------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def parse_instant(value: Any) -> int:
    """An instant for ``first_seen``/``last_seen`` -> epoch milliseconds (UTC).

    Accepts ISO-8601 strings (``"2024-05-01"``, ``"2024-05-01T10:00:00Z"``; naive means UTC) and epoch
    milliseconds (``1714557600000``), the two forms events carry. Raises ``ValueError`` otherwise, or
    outside 1900..2299 (the range of the column type).
    """
    if _is_number(value):
        ms = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("must be an ISO-8601 date/time or epoch milliseconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = math.floor(parsed.timestamp() * 1000)
    else:
        raise ValueError("must be an ISO-8601 date/time or epoch milliseconds")
    if not _MIN_MS <= ms <= _MAX_MS:
        raise ValueError("must be between 1900-01-01 and 2299-12-31")
    return ms


def _check_scalar(value: Any, kind: ComputedKind | None, ordering: bool) -> str | None:
    """Why ``value`` is not a valid single value for a field of ``kind`` (None: trait or property)."""
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return f"is too long (max {MAX_VALUE_CHARS} characters)"
    if kind == "number":
        return None if _is_number(value) else "must be a number"
    if kind == "text":
        return None if isinstance(value, str) else "must be a string"
    if kind == "datetime":
        try:
            parse_instant(value)
        except ValueError as exc:
            return str(exc)
        return None
    if ordering:
        return None if isinstance(value, str) or _is_number(value) else "must be a number or a string"
    return None if _is_scalar(value) else "must be a string, a number or a boolean"


def _check_value(op: str, value: Any, kind: ComputedKind | None) -> Any:
    """Validate ``value`` for ``op`` on a field of ``kind``; raises a pydantic error located at ``value``."""
    if op == "exists":
        if value is None or isinstance(value, bool):
            return value
        raise PydanticCustomError("value", "must be true, false or omitted for exists")
    if value is None:
        raise PydanticCustomError("value", "required for {op}", {"op": op})
    if op == "in":
        if not isinstance(value, list):
            raise PydanticCustomError("value", "must be a non-empty array for in")
        if not value:
            raise PydanticCustomError("value", "must be a non-empty array for in")
        if len(value) > MAX_IN_VALUES:
            raise PydanticCustomError("value", "too many values (max {n})", {"n": MAX_IN_VALUES})
        for i, item in enumerate(value):
            why = _check_scalar(item, kind, ordering=False)
            if why:
                raise PydanticCustomError("value", "[{i}] {why}", {"i": i, "why": why})
        return value
    needle_ok = (isinstance(value, str) and value) or (kind is None and _is_number(value))
    if op == "contains" and not needle_ok:
        raise PydanticCustomError("value", "must be a non-empty string for contains")
    why = _check_scalar(value, kind, ordering=op in ("gt", "gte", "lt", "lte"))
    if why:
        raise PydanticCustomError("value", why)
    return value


def _value_for_op(value: Any, info: ValidationInfo) -> Any:
    """The ``value`` validator of the rules that compare a field with a value (traits, event properties)."""
    op = info.data.get("op")
    return value if op is None else _check_value(op, value, None)


_KIND_OPS: Final[dict[str, frozenset[str]]] = {
    "number": frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "in"}),
    "datetime": frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "exists"}),
    "text": frozenset({"eq", "neq", "in", "contains", "exists"}),
}


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------


class _Node(BaseModel):
    """Shared config: unknown keys are errors (a typo such as ``"within_day"`` must not be ignored)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_alias=True, validate_by_name=True, serialize_by_alias=True
    )


class AllRule(_Node):
    """Every sub-rule holds (AND).

    Example: customers in France who spent over 500::

        {"all": [{"trait": "country", "op": "eq", "value": "FR"},
                 {"computed": "revenue", "op": "gt", "value": 500}]}
    """

    all: list[Rule] = Field(min_length=1, description="Sub-rules that must all hold (at least one).")


class AnyRule(_Node):
    """At least one sub-rule holds (OR).

    Example: big spenders or frequent buyers::

        {"any": [{"computed": "revenue", "op": "gte", "value": 1000},
                 {"computed": "orders", "op": "gte", "value": 10}]}
    """

    any: list[Rule] = Field(min_length=1, description="Sub-rules of which at least one must hold.")


class NotRule(_Node):
    """The sub-rule does not hold. Members are everyone in the scope who is not a member of the sub-rule,
    including people the sub-rule says nothing about (no such trait, no events at all).

    Example: never bought anything::

        {"not": {"event": "Order Completed", "type": "track"}}
    """

    not_: Rule = Field(alias="not", description="The rule that must not hold.")


class TraitRule(_Node):
    """A profile trait (profile scope only: traits may hold personal data).

    Traits are the latest value each key was given by identify calls (and ``context.traits``). Strings are
    compared as text, numbers numerically, booleans as ``true``/``false``.

    Examples::

        {"trait": "plan", "op": "eq", "value": "pro"}
        {"trait": "age", "op": "gte", "value": 18}
        {"trait": "address.city", "op": "in", "value": ["Paris", "Lyon"]}
        {"trait": "email", "op": "exists"}
    """

    trait: FieldName = Field(description="Trait name, e.g. plan or address.city (a trait key containing dots).")
    op: Op
    value: Value = Field(default=None, validate_default=True)
    _value = field_validator("value")(_value_for_op)


class GroupTraitRule(_Node):
    """A trait of a group the profile belongs to (profile scope only): B2B "people at accounts in retail".

    Groups are what ``group`` calls name (``groupId``); their traits are the latest value each key was given
    there, kept per group and never mixed into the person's traits. The rule holds when at least one of the
    profile's groups matches; compared as :class:`TraitRule` compares.

    Examples::

        {"group_trait": "industry", "op": "eq", "value": "retail"}
        {"group_trait": "employees", "op": "gte", "value": 500}
    """

    group_trait: FieldName = Field(description="Trait name of the group, e.g. industry or plan.")
    op: Op
    value: Value = Field(default=None, validate_default=True)
    _value = field_validator("value")(_value_for_op)


class ComputedRule(_Node):
    """A field computed from behaviour; the names depend on the scope.

    Profile scope (:data:`PROFILE_COMPUTED`): ``revenue`` and ``orders`` (from "Order Completed" events),
    ``events``, ``first_seen``, ``last_seen``, ``last_channel``. Anonymous scope (:data:`ANONYMOUS_COMPUTED`):
    ``events``, ``pages``, ``screens``, ``first_seen``, ``last_seen``, ``device_type``, ``os``, ``browser``,
    ``country``, ``region``.

    Numbers take eq/neq/gt/gte/lt/lte/in; instants (first_seen, last_seen) take eq/neq/gt/gte/lt/lte/exists
    with an ISO-8601 string or epoch milliseconds; text fields take eq/neq/in/contains/exists.

    Examples::

        {"computed": "revenue", "op": "gt", "value": 500}
        {"computed": "last_seen", "op": "gte", "value": "2024-05-01T00:00:00Z"}
        {"computed": "country", "op": "in", "value": ["FR", "BE"]}
    """

    computed: str = Field(description="Computed field name (see the lists above).", max_length=64)
    op: Op
    value: Value = Field(default=None, validate_default=True)

    @field_validator("computed")
    @classmethod
    def _computed(cls, name: str) -> str:
        if name not in _COMPUTED_KINDS:
            raise PydanticCustomError(
                "computed",
                "unknown computed field; profile scope: {p}; anonymous scope: {a}",
                {"p": ", ".join(PROFILE_COMPUTED), "a": ", ".join(ANONYMOUS_COMPUTED)},
            )
        return name

    @field_validator("op")
    @classmethod
    def _op(cls, op: str, info: ValidationInfo) -> str:
        kind = _COMPUTED_KINDS.get(info.data.get("computed", ""))
        if kind is not None and op not in _KIND_OPS[kind]:
            raise PydanticCustomError(
                "op",
                "{op} is not available for {kind} field {name}; use one of {ops}",
                {
                    "op": op,
                    "kind": kind,
                    "name": info.data["computed"],
                    "ops": ", ".join(o for o in OPS if o in _KIND_OPS[kind]),
                },
            )
        return op

    @field_validator("value")
    @classmethod
    def _value(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        kind = _COMPUTED_KINDS.get(info.data.get("computed", ""))
        return value if op is None or kind is None else _check_value(op, value, kind)

    @property
    def kind(self) -> ComputedKind:
        """``number``, ``datetime`` or ``text``."""
        return _COMPUTED_KINDS[self.computed]


class Condition(_Node):
    """A condition on a property of an event, inside a behaviour rule's ``where``.

    ``property`` is a path into the event's ``properties`` (``"path"``, ``"product.sku"``). Same operators and
    comparisons as traits; ``contains`` also tests membership when the property is an array.

    Examples::

        {"property": "path", "op": "eq", "value": "/pricing"}
        {"property": "revenue", "op": "gt", "value": 100}
        {"property": "tags", "op": "contains", "value": "sale"}
    """

    property: FieldName = Field(description="Property path, e.g. path or product.sku.")
    op: Op
    value: Value = Field(default=None, validate_default=True)
    _value = field_validator("value")(_value_for_op)


class CountCondition(_Node):
    """How many matching events a member must have. Default: at least one (``{"op": "gte", "value": 1}``).

    A count that zero satisfies (``{"op": "eq", "value": 0}``, ``{"op": "lt", "value": 3}``) also includes
    everyone in the scope with no matching event at all.

    Examples: ``{"op": "gte", "value": 3}`` (three times or more), ``{"op": "eq", "value": 0}`` (never).
    """

    op: CountOp = "gte"
    value: int = Field(default=1, ge=0, le=1_000_000_000, strict=True)


class BehaviourRule(_Node):
    """Behaviour: the number of someone's events that match, compared with ``count``.

    An event matches when it has the ``type`` (track, page, screen, identify; null = any), the ``event`` name
    (the track event, or the page/screen name; null = any), every ``where`` condition on its properties, and,
    with ``within_days``, happened in the last N days. Rules with ``within_days`` are re-evaluated on a
    schedule, so members leave when the window passes.

    Examples::

        {"event": "Order Completed", "type": "track"}                                   # bought at least once
        {"type": "page", "where": [{"property": "path", "op": "eq", "value": "/pricing"}], "within_days": 7}
        {"event": "Product Viewed", "within_days": 30, "count": {"op": "gte", "value": 3}}
        {"event": "Order Completed", "count": {"op": "eq", "value": 0}}                 # never bought
    """

    event: EventName | None = Field(default=None, description="Event name; null matches any.")
    type: EventKind | None = Field(default=None, description="Event type; null matches any.")
    where: list[Condition] = Field(
        default_factory=list, max_length=MAX_WHERE, description="Conditions on the event's properties, all must hold."
    )
    within_days: int | None = Field(
        default=None, ge=1, le=3650, strict=True, description="Only events of the last N days count."
    )
    count: CountCondition | None = Field(default=None, description="Default: at least one matching event.")


_TAGS: Final[dict[type[BaseModel], str]] = {
    AllRule: "rule:all",
    AnyRule: "rule:any",
    NotRule: "rule:not",
    TraitRule: "rule:trait",
    GroupTraitRule: "rule:group_trait",
    ComputedRule: "rule:computed",
    BehaviourRule: "rule:behaviour",
}
_TAG_NAMES: Final = frozenset(_TAGS.values())
_SHAPE_KEYS: Final = (
    ("all", "rule:all"),
    ("any", "rule:any"),
    ("not", "rule:not"),
    ("trait", "rule:trait"),
    ("group_trait", "rule:group_trait"),
    ("computed", "rule:computed"),
)
_BEHAVIOUR_KEYS: Final = frozenset({"event", "type", "where", "within_days", "count"})


def _shape(value: Any) -> str | None:
    """Which rule a payload is, from the keys it has (the first of all/any/not/trait/computed wins; any
    behaviour key makes a behaviour rule). Unknown shapes give None, reported as one clear error."""
    if isinstance(value, BaseModel):
        return _TAGS.get(type(value))
    if not isinstance(value, dict):
        return None
    for key, tag in _SHAPE_KEYS:
        if key in value:
            return tag
    return "rule:behaviour" if _BEHAVIOUR_KEYS & value.keys() else None


Rule = Annotated[
    Annotated[AllRule, Tag("rule:all")]
    | Annotated[AnyRule, Tag("rule:any")]
    | Annotated[NotRule, Tag("rule:not")]
    | Annotated[TraitRule, Tag("rule:trait")]
    | Annotated[GroupTraitRule, Tag("rule:group_trait")]
    | Annotated[ComputedRule, Tag("rule:computed")]
    | Annotated[BehaviourRule, Tag("rule:behaviour")],
    Discriminator(
        _shape,
        custom_error_type="rule_shape",
        custom_error_message=(
            "must be a rule object: {all: [...]}, {any: [...]}, {not: ...}, {trait, op, value}, "
            "{group_trait, op, value}, {computed, op, value} "
            "or a behaviour rule {event, type, where, within_days, count}"
        ),
    ),
]
"""Any rule shape; see the module docstring."""

for _model in (AllRule, AnyRule, NotRule):
    _model.model_rebuild()

_RULE_ADAPTER: Final[TypeAdapter[Rule]] = TypeAdapter(Rule)


def _children(rule: Any) -> list[tuple[str, Any]]:
    """(path suffix, child) of a combinator, on models or on raw payloads (same precedence as :func:`_shape`)."""
    tag = _shape(rule)
    if tag in ("rule:all", "rule:any"):
        key = tag[5:]
        items = getattr(rule, key) if isinstance(rule, BaseModel) else rule[key]
        return [(f".{key}[{i}]", c) for i, c in enumerate(items)] if isinstance(items, list) else []
    if tag == "rule:not":
        return [(".not", rule.not_ if isinstance(rule, NotRule) else rule["not"])]
    return []


def _check_limits(payload: Any, root: str) -> None:
    """Depth and size limits, checked on the raw payload before pydantic walks it, so a hostile definition
    (a thousand nested nots) costs nothing and is reported at the first rule past the limit."""
    seen = 0
    stack: list[tuple[Any, str, int]] = [(payload, root, 1)]
    while stack:
        node, path, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH:
            raise _problem(path, f"rules are nested too deeply (max {MAX_DEPTH} levels)", "rule_limit")
        if seen > MAX_RULES:
            raise _problem(root, f"too many rules (max {MAX_RULES})", "rule_limit")
        stack.extend((child, path + suffix, depth + 1) for suffix, child in reversed(_children(node)))


# --------------------------------------------------------------------------------------------------
# scope checks (need the sibling ``scope``, so they run on the validated tree)
# --------------------------------------------------------------------------------------------------


def is_pii_path(path: str) -> bool:
    """True if any segment of a property path names personal data (``user.email``, ``billing.FirstName``)."""
    return any(seg.lower().replace("_", "").replace("-", "") in PII_NAMES for seg in path.split("."))


def scope_problems(rule: Rule, scope: str, path: str = "rule") -> Iterator[tuple[str, str]]:
    """(path, message) for every part of ``rule`` that ``scope`` does not allow: traits and personal
    properties in anonymous scope, computed fields the scope does not have."""
    fields = _COMPUTED_BY_SCOPE.get(scope)
    if fields is None:
        yield "scope", "must be 'profile' or 'anonymous'"
        return
    if isinstance(rule, TraitRule) and scope == "anonymous":
        yield f"{path}.trait", "traits are not available in anonymous scope (they may hold personal data)"
    elif isinstance(rule, GroupTraitRule) and scope == "anonymous":
        yield f"{path}.group_trait", "groups are not available in anonymous scope (they belong to profiles)"
    elif isinstance(rule, ComputedRule) and rule.computed not in fields:
        yield f"{path}.computed", f"not a computed field of {scope} scope; use one of {', '.join(fields)}"
    elif isinstance(rule, BehaviourRule) and scope == "anonymous":
        for i, cond in enumerate(rule.where):
            if is_pii_path(cond.property):
                yield (
                    f"{path}.where[{i}].property",
                    "personal data is not available in anonymous scope "
                    "(email, phone, name, first_name, last_name, address, ip)",
                )
    for suffix, child in _children(rule):
        yield from scope_problems(child, scope, path + suffix)


def _first_scope_problem(rule: Rule, scope: str) -> None:
    for path, reason in scope_problems(rule, scope):
        raise _problem(path, reason, "rule_scope")


class _RuleAndScope(Protocol):
    rule: Rule
    scope: Scope


def _rule_within_limits(value: Any) -> Any:
    """The `rule` validator that runs before pydantic walks the rule (see :func:`_check_limits`)."""
    _check_limits(value, "rule")
    return value


M = TypeVar("M", bound=_RuleAndScope)


def _rule_fits_scope(model: M) -> M:
    """The model validator of every model that holds a rule and its scope."""
    _first_scope_problem(model.rule, model.scope)
    return model


class _ScopedRule(BaseModel):
    """A rule with the scope it is evaluated in (what :func:`validate_rule` validates)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Scope
    rule: Rule

    _limits = field_validator("rule", mode="before")(_rule_within_limits)

    _scope = model_validator(mode="after")(_rule_fits_scope)


class AudienceCreate(BaseModel):
    """Body of ``POST /v1/audiences``.

    Example::

        {"name": "High value", "scope": "profile", "description": "Lifetime revenue over 500",
         "rule": {"computed": "revenue", "op": "gt", "value": 500}}

    ``AudienceCreate.model_validate`` refuses every invalid definition; :func:`parse_audience` does the same
    and raises :class:`RuleError` with the exact JSON path, which is what the API reports.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, description="Shown in lists and in lookups.")
    scope: Scope = Field(description="profile: members are profiles; anonymous: anonymous and device ids.")
    rule: Rule
    description: str | None = Field(default=None, max_length=2000)
    purpose: Purpose | None = Field(
        default=None, description="The consent purpose members need; default personalization (profile), advertising."
    )

    @property
    def effective_purpose(self) -> str:
        return self.purpose or default_purpose(self.scope)

    @model_validator(mode="after")
    def _dmp_advertises(self) -> AudienceCreate:
        if self.scope == "anonymous" and self.effective_purpose != ADVERTISING:
            raise PydanticCustomError(
                "purpose", "{reason}", {"path": "purpose", "reason": "the anonymous scope serves advertising only"}
            )
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not name.strip():
            raise PydanticCustomError("name", "must not be blank")
        return name

    _limits = field_validator("rule", mode="before")(_rule_within_limits)

    _scope = model_validator(mode="after")(_rule_fits_scope)


# --------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------

_MESSAGES: Final = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be an array",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "string_pattern_mismatch": (
        "must be a field name: letters, digits, _ and -, not starting with a digit or -, "
        "dot-separated for nested fields (e.g. plan, address.city)"
    ),
}


def _message(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "literal_error":
        return f"must be {ctx.get('expected', 'one of the allowed values')}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "too_long":
        return f"too many items (max {ctx.get('max_length')})"
    if kind == "string_too_long":
        return f"too long (max {ctx.get('max_length')} characters)"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be <= {ctx.get('le')}"
    return str(err["msg"])


def _to_rule_error(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> RuleError:
    """The first problem of a pydantic error as a :class:`RuleError`, with union tags taken out of the path."""
    err = exc.errors(include_url=False, include_input=False)[0]
    ctx = err.get("ctx") or {}
    if "path" in ctx and "reason" in ctx:  # raised by us with the exact path
        return RuleError(str(ctx["path"]), str(ctx["reason"]))
    loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _TAG_NAMES))
    return RuleError(format_loc(loc), _message(err))


def validate_rule(payload: Any, scope: str) -> Rule:
    """Validate a rule for ``scope``; raises :class:`RuleError` (``path`` like ``rule.all[2].where[0].op``).

    >>> validate_rule({"trait": "plan", "op": "eq", "value": "pro"}, "profile")
    TraitRule(trait='plan', op='eq', value='pro')
    """
    try:
        return _ScopedRule.model_validate({"scope": scope, "rule": payload}).rule
    except ValidationError as exc:
        raise _to_rule_error(exc) from None


def parse_audience(payload: Any) -> AudienceCreate:
    """Validate a ``POST /v1/audiences`` body; raises :class:`RuleError` with the JSON path of the problem."""
    try:
        return AudienceCreate.model_validate(payload)
    except ValidationError as exc:
        raise _to_rule_error(exc) from None


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """The JSON form of a rule (``not`` under its JSON name), for storage and API answers; it validates back
    to an equal rule."""
    dumped: dict[str, Any] = _RULE_ADAPTER.dump_python(rule, mode="json", by_alias=True)
    return dumped


def _walk(rule: Rule) -> Iterator[Rule]:
    yield rule
    for _, child in _children(rule):
        yield from _walk(child)


def rule_uses_time_window(rule: Rule) -> bool:
    """True if any behaviour rule has ``within_days``: membership then changes with the clock alone, so the
    audience must be re-evaluated on a schedule, not only when events arrive."""
    return any(isinstance(r, BehaviourRule) and r.within_days is not None for r in _walk(rule))


def rule_window_days(rule: Rule) -> set[int]:
    """The distinct ``within_days`` of the rule's behaviour rules: membership can change with the clock alone only
    when an event passes one of these window edges, so only members with events near them need re-checking."""
    return {r.within_days for r in _walk(rule) if isinstance(r, BehaviourRule) and r.within_days is not None}


def rule_event_names(rule: Rule) -> set[str | None]:
    """Event names the behaviour rules look at (None: a rule on any event name). The stream uses it to skip
    audiences an event cannot affect; trait and computed rules depend on every event, which the caller
    learns from the rule shapes, not from here."""
    return {r.event for r in _walk(rule) if isinstance(r, BehaviourRule)}


def effective_count(rule: BehaviourRule) -> CountCondition:
    """The rule's count condition, with the default (at least one matching event) filled in."""
    return rule.count if rule.count is not None else CountCondition()


def count_includes_zero(count: CountCondition) -> bool:
    """True if having no matching event satisfies ``count`` (``eq 0``, ``lt 3``, ...): such rules must also
    select people who have no events at all, not only the ones found among the events."""
    k = count.value
    return {"eq": k == 0, "neq": k != 0, "gt": False, "gte": k == 0, "lt": k > 0, "lte": True}[count.op]
