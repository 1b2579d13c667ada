"""Audience definitions: every rule shape, every refusal with its exact JSON path, scope and size limits."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.audience import (
    FIELD_NAME_PATTERN,
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_RULES,
    AllRule,
    AnyRule,
    AudienceCreate,
    BehaviourRule,
    ComputedRule,
    CountCondition,
    GroupTraitRule,
    NotRule,
    RuleError,
    TraitRule,
    count_includes_zero,
    effective_count,
    is_pii_path,
    parse_audience,
    parse_instant,
    rule_event_names,
    rule_to_dict,
    rule_uses_time_window,
    validate_rule,
)

PRICING = {"type": "page", "where": [{"property": "path", "op": "eq", "value": "/pricing"}], "within_days": 7}
BOUGHT = {"event": "Order Completed", "type": "track"}


def _refused(payload: Any, scope: str = "profile") -> RuleError:
    with pytest.raises(RuleError) as info:
        validate_rule(payload, scope)
    return info.value


def _nested_nots(levels: int) -> dict[str, Any]:
    """A rule ``levels`` deep: levels-1 nots around one trait rule."""
    rule: dict[str, Any] = {"trait": "plan", "op": "exists"}
    for _ in range(levels - 1):
        rule = {"not": rule}
    return rule


# ------------------------------------------------------------------------------------------------
# valid shapes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "model"),
    [
        ({"all": [{"trait": "plan", "op": "eq", "value": "pro"}]}, AllRule),
        ({"any": [BOUGHT, {"computed": "orders", "op": "gte", "value": 2}]}, AnyRule),
        ({"not": BOUGHT}, NotRule),
        ({"trait": "plan", "op": "eq", "value": "pro"}, TraitRule),
        ({"trait": "address.city", "op": "in", "value": ["Paris", "Lyon"]}, TraitRule),
        ({"trait": "age", "op": "gte", "value": 18}, TraitRule),
        ({"trait": "vip", "op": "eq", "value": True}, TraitRule),
        ({"trait": "signup", "op": "lt", "value": "2024-01-01"}, TraitRule),
        ({"trait": "tags", "op": "contains", "value": "beta"}, TraitRule),
        ({"trait": "email", "op": "exists"}, TraitRule),
        ({"trait": "email", "op": "exists", "value": False}, TraitRule),
        ({"trait": "x-y_z.a1", "op": "neq", "value": 1.5}, TraitRule),
        ({"computed": "revenue", "op": "gt", "value": 500}, ComputedRule),
        ({"computed": "orders", "op": "in", "value": [1, 2]}, ComputedRule),
        ({"computed": "first_seen", "op": "gte", "value": "2024-05-01T00:00:00Z"}, ComputedRule),
        ({"computed": "last_seen", "op": "lt", "value": 1714557600000}, ComputedRule),
        ({"computed": "last_channel", "op": "in", "value": ["online", "mobile"]}, ComputedRule),
        ({"computed": "last_channel", "op": "contains", "value": "line"}, ComputedRule),
        ({"event": "Order Completed"}, BehaviourRule),
        ({"event": None, "type": "identify"}, BehaviourRule),
        ({"where": [{"property": "path", "op": "eq", "value": "/"}]}, BehaviourRule),
        (PRICING, BehaviourRule),
        ({"event": "Product Viewed", "within_days": 30, "count": {"op": "gte", "value": 3}}, BehaviourRule),
        ({"event": "Order Completed", "count": {"op": "eq", "value": 0}}, BehaviourRule),
        ({"all": [PRICING, {"not": BOUGHT}]}, AllRule),
    ],
)
def test_valid_shapes(payload: dict[str, Any], model: type) -> None:
    rule = validate_rule(payload, "profile")
    assert isinstance(rule, model)
    # the stored JSON form validates back to the same rule
    dumped = rule_to_dict(rule)
    assert json.loads(json.dumps(dumped)) == dumped
    assert validate_rule(dumped, "profile") == rule


def test_behaviour_defaults() -> None:
    rule = validate_rule({"event": "Signed Up"}, "profile")
    assert isinstance(rule, BehaviourRule)
    assert (rule.type, rule.where, rule.within_days, rule.count) == (None, [], None, None)
    assert effective_count(rule) == CountCondition(op="gte", value=1)


def test_not_is_spelled_not_in_json() -> None:
    rule = validate_rule({"not": {"all": [BOUGHT]}}, "profile")
    assert isinstance(rule, NotRule)
    assert isinstance(rule.not_, AllRule)
    assert set(rule_to_dict(rule)) == {"not"}


# ------------------------------------------------------------------------------------------------
# refusals, with the exact path
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "path", "msg"),
    [
        (None, "rule", "must be a rule object"),
        ([], "rule", "must be a rule object"),
        ({}, "rule", "must be a rule object"),
        ({"foo": 1}, "rule", "must be a rule object"),
        ({"all": []}, "rule.all", "must not be empty"),
        ({"any": []}, "rule.any", "must not be empty"),
        ({"all": "x"}, "rule.all", "must be an array"),
        ({"all": [1]}, "rule.all[0]", "must be a rule object"),
        ({"not": None}, "rule.not", "must be a rule object"),
        ({"all": [BOUGHT], "any": [BOUGHT]}, "rule.any", "unknown field"),
        ({"trait": "plan", "op": "eq", "value": "pro", "extra": 1}, "rule.extra", "unknown field"),
        ({"trait": "plan", "op": "equals", "value": "pro"}, "rule.op", "must be 'eq', 'neq'"),
        ({"trait": "plan", "value": "pro"}, "rule.op", "required"),
        ({"trait": "plan", "op": "eq"}, "rule.value", "required for eq"),
        ({"trait": "plan", "op": "eq", "value": None}, "rule.value", "required for eq"),
        ({"trait": "plan", "op": "eq", "value": ["a"]}, "rule.value", "string, a number or a boolean"),
        ({"trait": "plan", "op": "eq", "value": {"a": 1}}, "rule.value", "string, a number or a boolean"),
        ({"trait": "plan", "op": "in", "value": "pro"}, "rule.value", "non-empty array"),
        ({"trait": "plan", "op": "in", "value": []}, "rule.value", "non-empty array"),
        ({"trait": "plan", "op": "in", "value": ["a", ["b"]]}, "rule.value", "[1]"),
        ({"trait": "plan", "op": "in", "value": [None]}, "rule.value", "[0]"),
        ({"trait": "plan", "op": "in", "value": list(range(MAX_IN_VALUES + 1))}, "rule.value", "too many"),
        ({"trait": "age", "op": "gt", "value": True}, "rule.value", "number or a string"),
        ({"trait": "tags", "op": "contains", "value": ""}, "rule.value", "non-empty string"),
        ({"trait": "tags", "op": "contains", "value": True}, "rule.value", "non-empty string"),
        ({"trait": "email", "op": "exists", "value": "yes"}, "rule.value", "true, false or omitted"),
        ({"trait": "plan", "op": "eq", "value": "x" * 5000}, "rule.value", "too long"),
        ({"trait": 5, "op": "eq", "value": 1}, "rule.trait", "must be a string"),
        ({"computed": "ltv", "op": "gt", "value": 1}, "rule.computed", "unknown computed field"),
        ({"computed": "revenue", "op": "contains", "value": 1}, "rule.op", "contains is not available"),
        ({"computed": "revenue", "op": "exists"}, "rule.op", "exists is not available"),
        ({"computed": "revenue", "op": "gt", "value": "500"}, "rule.value", "must be a number"),
        ({"computed": "revenue", "op": "gt", "value": float("nan")}, "rule.value", "must be a number"),
        ({"computed": "orders", "op": "in", "value": [1, "2"]}, "rule.value", "[1] must be a number"),
        ({"computed": "first_seen", "op": "gt", "value": "last week"}, "rule.value", "ISO-8601"),
        ({"computed": "first_seen", "op": "gt", "value": "3000-01-01"}, "rule.value", "between 1900"),
        ({"computed": "first_seen", "op": "in", "value": ["2024-01-01"]}, "rule.op", "in is not available"),
        ({"computed": "last_channel", "op": "gt", "value": "a"}, "rule.op", "gt is not available"),
        ({"computed": "last_channel", "op": "eq", "value": 1}, "rule.value", "must be a string"),
        ({"event": ""}, "rule.event", "must not be empty"),
        ({"event": 42}, "rule.event", "must be a string"),
        ({"event": "x", "type": "alias"}, "rule.type", "must be 'track', 'page', 'screen' or 'identify'"),
        ({"event": "x", "within_days": 0}, "rule.within_days", ">= 1"),
        ({"event": "x", "within_days": 3651}, "rule.within_days", "<= 3650"),
        ({"event": "x", "within_days": 7.0}, "rule.within_days", "integer"),
        ({"event": "x", "within_days": "7"}, "rule.within_days", "integer"),
        ({"event": "x", "count": {"op": "in", "value": [1]}}, "rule.count.op", "must be 'eq'"),
        ({"event": "x", "count": {"op": "gte", "value": -1}}, "rule.count.value", ">= 0"),
        ({"event": "x", "count": {"op": "gte", "value": 1.5}}, "rule.count.value", "integer"),
        ({"event": "x", "count": 3}, "rule.count", "JSON object"),
        ({"event": "x", "where": {"property": "a"}}, "rule.where", "must be an array"),
        ({"event": "x", "where": [{"property": "a", "op": "eq"}]}, "rule.where[0].value", "required"),
        ({"event": "x", "where": [{"op": "eq", "value": 1}]}, "rule.where[0].property", "required"),
        ({"event": "x", "where": [{"property": "a", "op": "eq", "value": 1}] * 21}, "rule.where", "too many"),
    ],
)
def test_refusals_name_the_path(payload: Any, path: str, msg: str) -> None:
    err = _refused(payload)
    assert err.path == path
    assert msg in err.msg


def test_deep_path_of_a_nested_problem() -> None:
    payload = {
        "all": [
            BOUGHT,
            {"not": BOUGHT},
            {"any": [BOUGHT, {"event": "x", "where": [{"property": "a", "op": "like", "value": 1}]}]},
        ]
    }
    err = _refused(payload)
    assert err.path == "rule.all[2].any[1].where[0].op"
    assert str(err).startswith("rule.all[2].any[1].where[0].op: ")
    assert err.to_field_error().to_dict() == {"loc": err.path, "msg": err.msg}


def test_where_op_path_as_in_the_issue() -> None:
    payload = {"all": [BOUGHT, BOUGHT, {"event": "x", "where": [{"property": "a", "op": "between", "value": 1}]}]}
    assert _refused(payload).path == "rule.all[2].where[0].op"


@pytest.mark.parametrize(
    "name",
    [
        "",
        " plan",
        "plan ",
        "pl an",
        "1plan",
        "-plan",
        "plan.",
        ".plan",
        "a..b",
        "a.1b",
        "plan\n",
        "plan\x00",
        "plän",
        "plan'",
        'plan"',
        "plan`",
        "plan\\",
        "plan]",
        "traits['x']",
        "'); DROP TABLE cdp.events_store; --",
        "{p0:String}",
        "x" * 257,
    ],
)
def test_bad_field_names_are_refused(name: str) -> None:
    assert _refused({"trait": name, "op": "exists"}).path == "rule.trait"
    where = {"event": "x", "where": [{"property": name, "op": "exists"}]}
    assert _refused({"all": [where]}).path == "rule.all[0].where[0].property"


@given(st.text(max_size=40))
def test_field_names_follow_the_pattern(name: str) -> None:
    ok = re.fullmatch(FIELD_NAME_PATTERN, name) is not None and len(name) <= 256
    try:
        validate_rule({"trait": name, "op": "exists"}, "profile")
    except RuleError as err:
        assert not ok
        assert err.path == "rule.trait"
    else:
        assert ok


@given(st.from_regex(FIELD_NAME_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 256))
def test_every_pattern_name_is_accepted(name: str) -> None:
    rule = validate_rule({"event": "x", "where": [{"property": name, "op": "eq", "value": "v"}]}, "profile")
    assert isinstance(rule, BehaviourRule)
    assert rule.where[0].property == name


# ------------------------------------------------------------------------------------------------
# anonymous scope: no personal data
# ------------------------------------------------------------------------------------------------


def test_anonymous_scope_refuses_traits() -> None:
    err = _refused({"any": [BOUGHT, {"trait": "plan", "op": "eq", "value": "pro"}]}, "anonymous")
    assert err.path == "rule.any[1].trait"
    assert "anonymous scope" in err.msg


def test_a_group_trait_rule_is_a_profile_rule_of_its_own() -> None:
    rule = validate_rule({"all": [BOUGHT, {"group_trait": "industry", "op": "eq", "value": "retail"}]}, "profile")
    assert isinstance(rule, AllRule) and isinstance(rule.all[1], GroupTraitRule)
    assert rule_to_dict(rule.all[1]) == {"group_trait": "industry", "op": "eq", "value": "retail"}
    err = _refused({"not": {"group_trait": "industry", "op": "exists"}}, "anonymous")
    assert err.path == "rule.not.group_trait" and "anonymous scope" in err.msg


@pytest.mark.parametrize(
    "prop",
    [
        "email",
        "Email",
        "user.email",
        "phone",
        "name",
        "first_name",
        "firstName",
        "FIRST-NAME",
        "last_name",
        "lastname",
        "billing.address.city",
        "ip",
        "ctx.IP",
    ],
)
def test_anonymous_scope_refuses_pii_properties(prop: str) -> None:
    assert is_pii_path(prop)
    payload = {
        "not": {"event": "x", "where": [{"property": "path", "op": "exists"}, {"property": prop, "op": "exists"}]}
    }
    err = _refused(payload, "anonymous")
    assert err.path == "rule.not.where[1].property"
    assert "personal data" in err.msg
    validate_rule(payload, "profile")  # allowed on the profile side


@pytest.mark.parametrize("prop", ["path", "category", "product.sku", "email_opt_in_campaign", "zip", "ip_country"])
def test_anonymous_scope_allows_non_pii_properties(prop: str) -> None:
    assert not is_pii_path(prop)
    validate_rule({"event": "x", "where": [{"property": prop, "op": "exists"}]}, "anonymous")


@pytest.mark.parametrize(
    ("name", "profile_ok", "anonymous_ok"),
    [
        ("revenue", True, False),
        ("orders", True, False),
        ("last_channel", True, False),
        ("events", True, True),
        ("first_seen", True, True),
        ("last_seen", True, True),
        ("pages", False, True),
        ("screens", False, True),
        ("device_type", False, True),
        ("os", False, True),
        ("browser", False, True),
        ("country", False, True),
        ("region", False, True),
    ],
)
def test_computed_fields_per_scope(name: str, profile_ok: bool, anonymous_ok: bool) -> None:
    op, value = ("exists", None) if name not in ("revenue", "orders", "events", "pages", "screens") else ("gt", 1)
    for scope, ok in (("profile", profile_ok), ("anonymous", anonymous_ok)):
        payload = {"all": [{"computed": name, "op": op, "value": value}]}
        if ok:
            validate_rule(payload, scope)
        else:
            err = _refused(payload, scope)
            assert err.path == "rule.all[0].computed"
            assert f"{scope} scope" in err.msg


def test_unknown_scope() -> None:
    assert _refused(BOUGHT, "everyone").path == "scope"


# ------------------------------------------------------------------------------------------------
# limits
# ------------------------------------------------------------------------------------------------


def test_depth_limit() -> None:
    validate_rule(_nested_nots(MAX_DEPTH), "profile")
    err = _refused(_nested_nots(MAX_DEPTH + 1))
    assert err.path == "rule" + ".not" * MAX_DEPTH
    assert "nested too deeply" in err.msg


def test_depth_limit_inside_lists() -> None:
    inner: dict[str, Any] = BOUGHT
    for _ in range(MAX_DEPTH):
        inner = {"any": [BOUGHT, inner]}
    err = _refused(inner)
    # the first rule past the limit, in document order: level 11 is the BOUGHT of the innermost any
    assert err.path == "rule" + ".any[1]" * (MAX_DEPTH - 1) + ".any[0]"


def test_hostile_nesting_is_cheap() -> None:
    err = _refused(_nested_nots(100_000))
    assert "nested too deeply" in err.msg


def test_rule_count_limit() -> None:
    validate_rule({"any": [BOUGHT] * (MAX_RULES - 1)}, "profile")
    err = _refused({"any": [BOUGHT] * MAX_RULES})
    assert (err.path, err.msg) == ("rule", f"too many rules (max {MAX_RULES})")


# ------------------------------------------------------------------------------------------------
# the audience body
# ------------------------------------------------------------------------------------------------


def test_parse_audience() -> None:
    body = {
        "name": "Pricing, no purchase",
        "scope": "profile",
        "rule": {"all": [PRICING, {"not": BOUGHT}]},
        "description": "for the sales team",
    }
    audience = parse_audience(body)
    assert audience.scope == "profile"
    assert isinstance(audience.rule, AllRule)
    assert AudienceCreate.model_validate(body) == audience


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"scope": "profile", "rule": BOUGHT}, "name"),
        ({"name": "  ", "scope": "profile", "rule": BOUGHT}, "name"),
        ({"name": "x" * 201, "scope": "profile", "rule": BOUGHT}, "name"),
        ({"name": "a", "scope": "people", "rule": BOUGHT}, "scope"),
        ({"name": "a", "scope": "profile"}, "rule"),
        (
            {"name": "a", "scope": "profile", "rule": {"all": [BOUGHT, {"not": {"event": "x", "within_days": -1}}]}},
            "rule.all[1].not.within_days",
        ),
        (
            {"name": "a", "scope": "anonymous", "rule": {"all": [{"trait": "plan", "op": "exists"}]}},
            "rule.all[0].trait",
        ),
        ({"name": "a", "scope": "profile", "rule": _nested_nots(MAX_DEPTH + 1)}, "rule" + ".not" * MAX_DEPTH),
        ({"name": "a", "scope": "profile", "rule": BOUGHT, "owner": "me"}, "owner"),
        ("not an object", ""),
    ],
)
def test_parse_audience_refusals(body: Any, path: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_audience(body)
    assert info.value.path == path
    with pytest.raises(ValidationError):  # the model itself refuses the same bodies
        AudienceCreate.model_validate(body)


def test_json_schema_documents_every_shape() -> None:
    schema = AudienceCreate.model_json_schema()
    text = json.dumps(schema)  # serialisable, so the README / API can publish it
    for name in (
        "AllRule",
        "AnyRule",
        "NotRule",
        "TraitRule",
        "GroupTraitRule",
        "ComputedRule",
        "BehaviourRule",
        "Condition",
        "CountCondition",
    ):
        assert name in schema["$defs"]
        assert schema["$defs"][name]["description"]
    assert "not" in schema["$defs"]["NotRule"]["properties"]
    assert "Example" in text
    assert set(schema["properties"]) == {"name", "scope", "rule", "description", "purpose"}


# ------------------------------------------------------------------------------------------------
# helpers used by the scheduler and the stream
# ------------------------------------------------------------------------------------------------


def test_rule_uses_time_window() -> None:
    assert rule_uses_time_window(validate_rule({"all": [BOUGHT, {"not": PRICING}]}, "profile"))
    assert not rule_uses_time_window(validate_rule({"all": [BOUGHT, {"not": BOUGHT}]}, "profile"))
    assert not rule_uses_time_window(validate_rule({"trait": "plan", "op": "exists"}, "profile"))


def test_rule_event_names() -> None:
    rule = validate_rule({"any": [PRICING, {"not": BOUGHT}, {"trait": "plan", "op": "exists"}]}, "profile")
    assert rule_event_names(rule) == {None, "Order Completed"}
    assert rule_event_names(validate_rule({"computed": "revenue", "op": "gt", "value": 1}, "profile")) == set()


@pytest.mark.parametrize(
    ("op", "value", "zero"),
    [
        ("eq", 0, True),
        ("eq", 2, False),
        ("neq", 0, False),
        ("neq", 2, True),
        ("gt", 0, False),
        ("gte", 0, True),
        ("gte", 1, False),
        ("lt", 0, False),
        ("lt", 3, True),
        ("lte", 0, True),
    ],
)
def test_count_includes_zero(op: str, value: int, zero: bool) -> None:
    assert count_includes_zero(CountCondition.model_validate({"op": op, "value": value})) is zero


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("2024-05-01T10:00:00Z", 1714557600000),
        ("2024-05-01T12:00:00+02:00", 1714557600000),
        ("2024-05-01T10:00:00", 1714557600000),
        ("2024-05-01", 1714521600000),
        (1714557600000, 1714557600000),
    ],
)
def test_parse_instant(value: Any, ms: int) -> None:
    assert parse_instant(value) == ms


@pytest.mark.parametrize("value", ["soon", "", None, True, [1], "2400-01-01", -(10**15)])
def test_parse_instant_refusals(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_instant(value)
