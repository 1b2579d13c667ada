"""Audience rule -> one parameterised ClickHouse SELECT returning the members, in a column named ``member``.

Why compiled SQL: membership is computed when an audience is created and re-evaluated on a schedule (time
windows) over the whole store, which is ClickHouse's job; the stream only keeps it current in between.

Safety, because rules come from API users:

* every value from a user (trait names, property path segments, event names, values, counts, days) is a
  server-side bound parameter ``{p0:String}``, ``{p1:Float64}``, ``{p2:Array(String)}``...: the SQL text is
  the same whatever the values are, so no value can change what the query does;
* field names never become identifiers: traits are read with map access on a bound key
  (``traits[{p3:String}]``), properties with ``JSONExtract*(properties, {p4:String}, {p5:String})`` on the
  path split into bound keys, and computed fields come from a fixed whitelist of column expressions;
* the database name is the only interpolated text, and must match ``^[a-z_][a-z0-9_]*$``.

Semantics (one pass over the scope's universe, each rule a boolean predicate on a member):

* profile scope: the universe is every profile (``profiles``; a behaviour-only rule uses the same set read
  from ``identities``, without the cost of the traits and stats joins). Behaviour is counted over
  ``events_with_profile`` (events under the profile that now holds them, so merges are respected).
* anonymous scope: the universe is ``anonymous_profiles`` (rows past the TTL are already hidden there);
  behaviour is counted over ``events``, per ``anonymous_id:<anonymousId>`` and per
  ``device_id:<context.device.id>``.
* a group-trait leaf is ``profile_id IN`` the members (``profile_groups``) of the groups (``groups``) whose
  trait matches.
* restricted to a few members (``restrict_to``: the ones new events touched, or near a time window's edge),
  the same predicate reads only their rows: profiles from ``profiles_of`` and behaviour from
  ``profile_events_of`` (primary-key reads over the members' identifier keys), anonymous ids from
  ``anonymous_profiles`` and ``events_by_key`` by member key. The answer for those members is the one the full
  evaluation would give them.
* all/any/not are AND/OR/NOT of the sub-predicates. Every leaf is made two-valued (``ifNull(..., 0)``), so
  ``not`` really is the complement: someone without the trait is in ``not (trait eq x)``.
* a behaviour leaf is ``member IN (ids whose matching-event count satisfies count)``; when zero satisfies the
  count (``eq 0``, ``lt 3``) it is ``member NOT IN (ids whose count does not satisfy it)``, which also selects
  everyone with no matching event. That is what "viewed pricing but bought nothing" needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from schemas.audience import (
    AllRule,
    AnyRule,
    BehaviourRule,
    ComputedKind,
    ComputedRule,
    Condition,
    GroupTraitRule,
    NotRule,
    Rule,
    RuleError,
    TraitRule,
    count_includes_zero,
    effective_count,
    parse_instant,
    scope_problems,
)
from schemas.consent import DEFAULT_CONSENT
from sinks.profile_sql import keys_of_profiles

__all__ = ["EVENT_ANON_MEMBERS", "CompiledAudience", "compile_audience", "identifier_pair", "needs_profile_row"]

_DB_NAME: Final = re.compile(r"[a-z_][a-z0-9_]*")
_CMP: Final = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_COUNT_CMP: Final = {**_CMP, "neq": "!="}

# The member id of an anonymous_profiles row, and of an event (one per identifier the event carries).
_ANON_MEMBER: Final = "concat(id_type, ':', id_value)"
EVENT_ANON_MEMBERS: Final = (
    "arrayFilter(x -> x != '', [if(anonymous_id = '', '', concat('anonymous_id:', anonymous_id)), "
    "if(device_id = '', '', concat('device_id:', device_id))])"
)

# Computed fields: name -> fixed SQL over the scope's universe row. Nothing else reaches the SQL.
_PROFILE_COMPUTED_SQL: Final[dict[str, str]] = {
    "revenue": "toFloat64(revenue)",
    "orders": "toFloat64(orders)",
    "events": "toFloat64(events)",
    "first_seen": "first_seen",
    "last_seen": "last_seen",
    "last_channel": "toString(last_channel)",
}
_ANONYMOUS_COMPUTED_SQL: Final[dict[str, str]] = {
    "events": "toFloat64(events)",
    "pages": "toFloat64(pages)",
    "screens": "toFloat64(screens)",
    "first_seen": "first_seen",
    "last_seen": "last_seen",
    "device_type": "toString(device_type)",
    "os": "toString(os)",
    "browser": "toString(browser)",
    "country": "toString(country)",
    "region": "toString(region)",
}


@dataclass(frozen=True, slots=True)
class CompiledAudience:
    """A compiled audience: run ``sql`` with ``params`` (clickhouse-connect server-side binding).

    The result has one column, ``member``: profile ids (profile scope) or ``anonymous_id:...`` /
    ``device_id:...`` (anonymous scope), each once.
    """

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


def _text_of(value: Any) -> str:
    """A scalar as the text ClickHouse holds for it (traits and properties keep non-strings as raw JSON),
    so ``true`` matches the trait ``true`` and ``3`` matches ``3``."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Compiler:
    """Builds the predicate and collects the bound parameters (``p0``, ``p1``, ... in order of use)."""

    def __init__(
        self, scope: str, db: str, restrict_to: Sequence[str] | None = None, member_keys: Sequence[str] | None = None
    ) -> None:
        self.scope = scope
        self.db = db
        self.params: dict[str, Any] = {}
        # the placeholder of the members the evaluation is restricted to, bound once and used wherever rows are read
        self.restricted = None if restrict_to is None else self.bind(list(restrict_to), "Array(String)")
        # and of their identifier keys (a constant list reads by primary key with a small plan)
        self.keys = ""
        if self.restricted is not None and scope == "profile":
            self.keys = (
                keys_of_profiles(db, self.restricted)
                if member_keys is None
                else self.bind(list(member_keys), "Array(String)")
            )
        self.computed = _PROFILE_COMPUTED_SQL if scope == "profile" else _ANONYMOUS_COMPUTED_SQL

    def bind(self, value: Any, ch_type: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{ch_type}}}"

    # ---- combinators -------------------------------------------------------------------------

    def rule(self, rule: Rule) -> str:
        if isinstance(rule, AllRule):
            return "(" + " AND ".join(self.rule(r) for r in rule.all) + ")"
        if isinstance(rule, AnyRule):
            return "(" + " OR ".join(self.rule(r) for r in rule.any) + ")"
        if isinstance(rule, NotRule):
            return f"(NOT {self.rule(rule.not_)})"
        if isinstance(rule, TraitRule):
            key = self.bind(rule.trait, "String")
            text = f"traits[{key}]"
            present = f"(mapContains(traits, {key}) AND {text} != 'null')"
            # Traits keep strings unquoted, so a text that parses as a JSON array is taken for an array.
            return self.leaf(self.compare(rule.op, rule.value, text, present, f"JSONType({text}) = 'Array'"))
        if isinstance(rule, GroupTraitRule):
            return self.group_trait(rule)
        if isinstance(rule, ComputedRule):
            return self.leaf(self.computed_rule(rule))
        if isinstance(rule, BehaviourRule):
            return self.behaviour(rule)
        raise TypeError(f"not a rule: {type(rule).__name__}")

    @staticmethod
    def leaf(predicate: str) -> str:
        """Two-valued: NULL (a missing or non-numeric field) is false, so NOT gives the complement."""
        return f"ifNull({predicate}, 0)"

    # ---- traits and properties (text that may hold a number, a boolean or raw JSON) --------------

    def compare(self, op: str, value: Any, text: str, present: str, is_array: str) -> str:
        """``text`` compared with a user value; ``present`` tells whether the field exists at all and
        ``is_array`` whether it holds a JSON array (``contains`` then tests membership)."""
        if op == "exists":
            return present if value is not False else f"NOT {present}"
        if op == "neq":
            return f"NOT ifNull({self.compare('eq', value, text, present, is_array)}, 0)"
        if op == "in":
            if all(_is_number(v) for v in value):
                return f"has({self.bind([float(v) for v in value], 'Array(Float64)')}, toFloat64OrNull({text}))"
            return f"has({self.bind([_text_of(v) for v in value], 'Array(String)')}, {text})"
        if op == "contains":
            needle = self.bind(_text_of(value), "String")
            unquote = "x -> if(JSONType(x) = 'String', JSONExtractString(x), x)"
            elements = f"arrayMap({unquote}, JSONExtractArrayRaw({text}))"
            return f"if({is_array}, has({elements}, {needle}), position({text}, {needle}) > 0)"
        cmp = _CMP[op]
        if _is_number(value):
            return f"toFloat64OrNull({text}) {cmp} {self.bind(float(value), 'Float64')}"
        if op == "eq":
            return f"{text} = {self.bind(_text_of(value), 'String')}"
        return f"({present} AND {text} {cmp} {self.bind(value, 'String')})"

    def condition(self, cond: Condition) -> str:
        """A property condition on an event; the path is split into bound JSON keys."""
        keys = ", ".join(self.bind(seg, "String") for seg in cond.property.split("."))
        kind = f"JSONType(properties, {keys})"
        text = f"if({kind} = 'String', JSONExtractString(properties, {keys}), JSONExtractRaw(properties, {keys}))"
        return self.leaf(self.compare(cond.op, cond.value, text, f"({kind} != 'Null')", f"{kind} = 'Array'"))

    def group_trait(self, rule: GroupTraitRule) -> str:
        """Members of at least one group whose trait matches (a profile without groups never does)."""
        key = self.bind(rule.group_trait, "String")
        text = f"traits[{key}]"
        present = f"(mapContains(traits, {key}) AND {text} != 'null')"
        matches = self.leaf(self.compare(rule.op, rule.value, text, present, f"JSONType({text}) = 'Array'"))
        groups = f"SELECT group_id FROM {self.db}.groups WHERE {matches}"
        return f"(profile_id IN (SELECT profile_id FROM {self.db}.profile_groups WHERE group_id IN ({groups})))"

    # ---- computed fields ------------------------------------------------------------------------

    def computed_rule(self, rule: ComputedRule) -> str:
        column = self.computed[rule.computed]  # scope checked by compile_audience: never a KeyError
        kind: ComputedKind = rule.kind
        op, value = rule.op, rule.value
        if op == "neq":
            return f"NOT {self.leaf(self.computed_rule(rule.model_copy(update={'op': 'eq'})))}"
        if kind == "number":
            if op == "in":
                return f"has({self.bind([float(v) for v in value], 'Array(Float64)')}, {column})"
            return f"{column} {_CMP[op]} {self.bind(float(value), 'Float64')}"
        if kind == "datetime":
            present = "events > 0"  # a profile without events has no first/last seen (the column holds 1970)
            if op == "exists":
                return present if value is not False else f"NOT ({present})"
            instant = f"fromUnixTimestamp64Milli({self.bind(parse_instant(value), 'Int64')}, 'UTC')"
            return f"({present} AND {column} {_CMP[op]} {instant})"
        if op == "exists":
            return f"{column} != ''" if value is not False else f"{column} = ''"
        if op == "in":
            return f"has({self.bind(list(value), 'Array(String)')}, {column})"
        if op == "contains":
            return f"position({column}, {self.bind(value, 'String')}) > 0"
        return f"{column} = {self.bind(value, 'String')}"

    # ---- behaviour --------------------------------------------------------------------------------

    def behaviour(self, rule: BehaviourRule) -> str:
        match = ["profile_id != ''"] if self.scope == "profile" else []
        if rule.type is not None:
            match.append(f"type = {self.bind(rule.type, 'String')}")
        if rule.event is not None:
            match.append(f"event = {self.bind(rule.event, 'String')}")
        if rule.within_days is not None:
            match.append(f"timestamp >= now64(3) - toIntervalDay({self.bind(rule.within_days, 'UInt32')})")
        match.extend(self.condition(c) for c in rule.where)
        where = " AND ".join(match) or "1"

        count = effective_count(rule)
        includes_zero = count_includes_zero(count)
        having = f"count() {_COUNT_CMP[count.op]} {self.bind(count.value, 'UInt64')}"
        if includes_zero:
            having = f"NOT ({having})"
        if self.scope == "profile":
            events = f"{self.db}.events_with_profile"
            if self.restricted is not None:
                events = f"{self.db}.profile_events_of(keys = {self.keys})"
            ids = f"SELECT profile_id FROM {events} WHERE {where} GROUP BY profile_id HAVING {having}"
            member = "profile_id"
        elif self.restricted is not None:
            ids = (
                f"SELECT key FROM {self.db}.events_by_key FINAL WHERE is_anonymous = 1 AND key IN {self.restricted} "
                f"AND {where} GROUP BY key HAVING {having}"
            )
            member = _ANON_MEMBER
        else:
            ids = (
                f"SELECT m FROM (SELECT anonymous_id, JSONExtractString(context, 'device', 'id') AS device_id "
                f"FROM {self.db}.events WHERE {where}) ARRAY JOIN {EVENT_ANON_MEMBERS} AS m "
                f"GROUP BY m HAVING {having}"
            )
            member = _ANON_MEMBER
        return f"({member} {'NOT IN' if includes_zero else 'IN'} ({ids}))"


def needs_profile_row(rule: Rule) -> bool:
    """True if a trait or computed rule reads the profiles view's columns (traits, revenue, ...)."""
    if isinstance(rule, TraitRule | ComputedRule):
        return True
    if isinstance(rule, AllRule):
        return any(needs_profile_row(r) for r in rule.all)
    if isinstance(rule, AnyRule):
        return any(needs_profile_row(r) for r in rule.any)
    if isinstance(rule, NotRule):
        return needs_profile_row(rule.not_)
    return False


def compile_audience(
    rule: Rule,
    scope: str,
    db: str,
    *,
    restrict_to: Sequence[str] | None = None,
    member_keys: Sequence[str] | None = None,
    purpose: str | None = None,
) -> CompiledAudience:
    """Compile a validated rule (:func:`schemas.audience.validate_rule`) for ``scope`` over database ``db``.

    ``restrict_to`` limits the evaluation to the given member ids (e.g. the profiles a batch of events just
    touched), so the stream can re-check a few members without reading the answer for everyone. For profiles,
    ``member_keys`` may list the keys those profiles ever held (:data:`sinks.profile_sql.KEYS_OF_PROFILES_SQL`,
    read once for several audiences); without it the query looks them up itself.

    ``purpose`` (profile scope): members need consent for it (``profile_consent_of``): where a profile said
    nothing, the built-in default (schemas/consent.py) decides; ``necessary`` and None need none. Anonymous scope
    needs advertising consent whatever the purpose: its universe, ``anonymous_profiles``, holds no other cookie.

    Raises ``ValueError`` for a bad ``db`` or scope and :class:`RuleError` if the rule uses what the scope
    does not allow (checked again here: a rule validated for one scope may be handed over for another).

    >>> from schemas.audience import validate_rule
    >>> c = compile_audience(validate_rule({"trait": "plan", "op": "eq", "value": "pro"}, "profile"),
    ...                      "profile", "cdp")
    >>> c.params
    {'p0': 'plan', 'p1': 'pro'}
    """
    if not isinstance(db, str) or not _DB_NAME.fullmatch(db):
        raise ValueError(f"invalid database name: {db!r}")
    if scope not in ("profile", "anonymous"):
        raise ValueError(f"invalid scope: {scope!r}")
    for path, reason in scope_problems(rule, scope):
        raise RuleError(path, reason)

    compiler = _Compiler(scope, db, restrict_to, member_keys)
    predicate = compiler.rule(rule)
    if scope == "profile":
        member = "profile_id"
        source = _profile_universe(db, compiler.restricted, compiler.keys, needs_profile_row(rule))
    else:
        member = _ANON_MEMBER
        source = _anonymous_universe(db, compiler.restricted)
    if scope == "profile" and purpose not in (None, "necessary"):
        predicate = f"{_consented(db, compiler, purpose)} AND {predicate}"
    if compiler.restricted is not None:
        predicate = f"has({compiler.restricted}, {member}) AND {predicate}"
    sql = f"SELECT {member} AS member\nFROM {source}\nWHERE {predicate}"
    return CompiledAudience(sql=sql, params=compiler.params)


def _consented(db: str, compiler: _Compiler, purpose: str) -> str:
    """Profiles with consent for ``purpose``: those that granted it, or, where it is granted by default, those that
    did not deny it (read for the restricted members' keys only when restricted)."""
    keys = compiler.keys or "[]"
    p = compiler.bind(purpose, "String")
    said = f"SELECT profile_id FROM {db}.profile_consent_of(keys = {keys}) WHERE purpose = {p}"
    if DEFAULT_CONSENT.get(purpose, False):
        return f"(profile_id NOT IN ({said} AND granted = 0))"
    return f"(profile_id IN ({said} AND granted = 1))"


def _profile_universe(db: str, restricted: str | None, keys: str, with_row: bool) -> str:
    """Every profile, or the given ones: with their profile row, or only their ids (behaviour-only rules)."""
    if restricted is None:
        return f"{db}.profiles" if with_row else f"(SELECT DISTINCT profile_id FROM {db}.identities)"
    if with_row:
        return f"(SELECT * FROM {db}.profiles_of(keys = {keys}) WHERE profile_id IN {restricted})"
    return (
        f"(SELECT DISTINCT current AS profile_id FROM {db}.profile_identifiers_of(keys = {keys}) "
        f"WHERE current IN {restricted})"
    )


def _anonymous_universe(db: str, restricted: str | None) -> str:
    """Every anonymous profile, or the given members' (read by primary key)."""
    if restricted is None:
        return f"{db}.anonymous_profiles"
    ids = f"SELECT {identifier_pair('m')} FROM (SELECT arrayJoin({restricted}) AS m)"
    return f"(SELECT * FROM {db}.anonymous_profiles WHERE (id_type, id_value) IN ({ids}))"


def identifier_pair(key: str) -> str:
    """``id_type, id_value`` of an identifier key column (``type:value``), to look it up by primary key in the
    tables ordered by ``(id_type, id_value)``."""
    return f"substring({key}, 1, position({key}, ':') - 1), substring({key}, position({key}, ':') + 1)"
