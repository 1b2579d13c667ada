"""The rule file is configuration an operator edits: it must load, validate and answer the graph's questions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from identity.extract import Identifier, extract_identifiers
from identity.rules import IdentityRules

BUILTIN_ORDER = [
    "user_id",
    "email",
    "phone",
    "loyalty_id",
    "crm_id",
    "device_id",
    "advertising_id",
    "anonymous_id",
]


def test_default_rules_load_with_documented_types_in_priority_order() -> None:
    rules = IdentityRules.load(None)
    assert sorted(rules.types, key=rules.priority) == BUILTIN_ORDER
    assert rules.limit("user_id") == 1
    assert rules.limit("anonymous_id") == 100
    assert rules.types["loyalty_id"].source == "loyalty_id"
    assert rules.types["crm_id"].source == "crm_id"
    assert rules.types["email"].normalise == "email"
    assert rules.types["phone"].normalise == "phone"
    assert rules.max_identifiers_per_profile == 1000
    for spec in rules.types.values():
        assert spec.limit is not None, "every default type documents a limit"


def test_unknown_type_ranks_last_and_is_capped_globally() -> None:
    rules = IdentityRules.load(None)
    assert rules.priority("nope") > max(rules.priority(t) for t in rules.types)
    assert rules.limit("nope") is None
    assert rules.effective_limit("nope") == rules.max_identifiers_per_profile


def test_allows_link() -> None:
    rules = IdentityRules.load(None)
    assert rules.allows_link({"user_id": ["a"]}, {"user_id": ["a"], "email": ["x@y.io"]})
    assert not rules.allows_link({"user_id": ["a"]}, {"user_id": ["b"]})
    five = {"email": [f"e{i}@x.io" for i in range(5)]}
    assert rules.allows_link(five, {"email": ["e0@x.io"]})
    assert not rules.allows_link(five, {"email": ["e9@x.io"]})
    assert rules.allows_link({}, {})


def test_max_identifiers_counts_all_types() -> None:
    rules = IdentityRules.model_validate(
        {
            "types": {
                "anonymous_id": {"priority": 1},
                "device_id": {"priority": 2},
            },
            "max_identifiers_per_profile": 3,
        }
    )
    assert rules.allows_link({"anonymous_id": ["a", "b"]}, {"device_id": ["d"]})
    assert not rules.allows_link({"anonymous_id": ["a", "b"]}, {"device_id": ["d", "e"]})
    assert rules.link_violations({"anonymous_id": ["a", "b"]}, {"device_id": ["d", "e"]}) == ["max_identifiers"]


def test_union_is_a_capped_join() -> None:
    rules = IdentityRules.load(None)
    a = {"user_id": ["u2"], "email": ["b@x.io"]}
    b = {"user_id": ["u1", "u3"], "email": ["a@x.io"]}
    joined = rules.union(a, b)
    assert joined == {"email": ["a@x.io", "b@x.io"], "user_id": ["u1", "u2"]}  # capped at limit + 1
    assert joined == rules.union(b, a)
    assert rules.union(joined, a) == joined


def test_load_custom_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        """
types:
  user_id: {priority: 1, limit: 1}
  member_no: {priority: 2, limit: 2, source: memberNumber}
  work_email: {priority: 3, source: workEmail, normalise: email}
blocklist:
  values: [guest]
  patterns: ["^x+$"]
max_identifiers_per_profile: 50
""",
        encoding="utf-8",
    )
    rules = IdentityRules.load(str(path))
    assert rules.types["member_no"].name == "member_no"
    assert rules.types["work_email"].limit is None
    assert rules.effective_limit("work_email") == 50
    assert rules.is_blocked("XXX") and rules.is_blocked('"guest"') and not rules.is_blocked("null")


@pytest.mark.parametrize(
    "types",
    [
        {"user_id": {"priority": 1, "limit": 0}},
        {"loyalty": {"priority": 1}},  # custom type without a trait source
        {"a:b": {"priority": 1, "source": "ab"}},
        {"user_id": {"priority": 1, "normalise": "upper"}},
        {"user_id": {"priority": 1, "limti": 1}},
        {"user_id": {"priority": 1, "name": "email"}},
        {},
    ],
)
def test_invalid_rules_are_rejected(types: dict) -> None:
    with pytest.raises((ValidationError, ValueError)):
        IdentityRules.model_validate({"types": types})


def test_rules_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mapping"):
        IdentityRules.load(path)


@pytest.mark.parametrize("email", ["test@test.com", " Test@Test.com ", "noemail@example.com", "none@none.com"])
def test_placeholder_e_mails_identify_nobody(email: str) -> None:
    """Forms and tills fill these in when a customer gives no e-mail: as identifiers they would join strangers."""
    rules = IdentityRules.load(None)
    assert extract_identifiers({"traits": {"email": email}, "userId": "u1"}, rules) == [Identifier("user_id", "u1")]
