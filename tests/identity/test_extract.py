"""Where identifiers come from in Segment-spec events (README.md, "Identity resolution"), and what never counts as
one."""

from __future__ import annotations

from typing import Any

import pytest

from identity.extract import Identifier, extract_identifiers, primary_identifier
from identity.rules import IdentityRules

RULES = IdentityRules.load(None)


def keys(event: dict[str, Any], rules: IdentityRules = RULES) -> list[str]:
    return [ident.key for ident in extract_identifiers(event, rules)]


def test_every_source_field_sorted_by_priority() -> None:
    event = {
        "type": "identify",
        "userId": "u-1",
        "anonymousId": "anon-1",
        "traits": {"email": " Ann@Example.com ", "phone": "(415) 555-2671", "loyalty_id": "L-9", "crm_id": 77},
        "context": {
            "device": {"id": "dev-1", "advertisingId": "ad-1"},
            "traits": {"email": "ann.work@corp.io", "phone": "+49 30 1234567"},
        },
    }
    assert keys(event) == [
        "user_id:u-1",
        "email:ann.work@corp.io",
        "email:ann@example.com",
        "phone:+14155552671",
        "phone:+49301234567",
        "loyalty_id:L-9",
        "crm_id:77",
        "device_id:dev-1",
        "advertising_id:ad-1",
        "anonymous_id:anon-1",
    ]


def test_context_traits_alone_and_custom_trait_in_context() -> None:
    event = {"anonymousId": "a", "context": {"traits": {"email": "x@y.io", "loyalty_id": "L1"}}}
    assert keys(event) == ["email:x@y.io", "loyalty_id:L1", "anonymous_id:a"]


def test_same_value_in_traits_and_context_traits_is_one_identifier() -> None:
    event = {"traits": {"email": "X@Y.io"}, "context": {"traits": {"email": "x@y.io "}}}
    assert keys(event) == ["email:x@y.io"]


def test_alias_previous_id_is_an_anonymous_id() -> None:
    event = {"type": "alias", "userId": "u-1", "previousId": "anon-old"}
    assert keys(event) == ["user_id:u-1", "anonymous_id:anon-old"]


def test_alias_previous_id_equal_to_user_id_adds_nothing() -> None:
    assert keys({"type": "alias", "userId": "u-1", "previousId": "u-1"}) == ["user_id:u-1"]
    assert keys({"type": "alias", "userId": 42, "previousId": "42"}) == ["user_id:42"]


def test_numbers_are_ids_but_bools_objects_and_lists_are_not() -> None:
    event = {
        "userId": 12345,
        "anonymousId": True,
        "traits": {"email": ["a@b.io"], "phone": 4155552671, "loyalty_id": {"n": 1}, "crm_id": 9.0},
        "context": {"device": {"id": False, "advertisingId": 3.5}},
    }
    assert keys(event) == ["user_id:12345", "phone:+14155552671", "crm_id:9", "advertising_id:3.5"]


@pytest.mark.parametrize(
    "junk",
    ["null", '"null"', "'undefined'", "", "  ", "0", "-1", "00000000-0000-0000-0000-000000000000", "NaN", "guest"],
)
def test_junk_values_are_dropped(junk: str) -> None:
    event = {
        "userId": junk,
        "anonymousId": junk,
        "traits": {"loyalty_id": junk},
        "context": {"device": {"id": junk, "advertisingId": junk}},
    }
    assert keys(event) == []


def test_invalid_email_and_phone_are_dropped() -> None:
    assert keys({"traits": {"email": "email", "phone": "1111111111"}}) == []
    assert keys({"traits": {"email": "not-an-email", "phone": "n/a"}}) == []


def test_all_zero_advertising_id_is_dropped() -> None:
    event = {"context": {"device": {"id": "d1", "advertisingId": "00000000-0000-0000-0000-000000000000"}}}
    assert keys(event) == ["device_id:d1"]


def test_values_are_trimmed() -> None:
    assert keys({"userId": "  u-1 "}) == ["user_id:u-1"]


def test_malformed_nested_fields_are_ignored() -> None:
    event = {"anonymousId": "a", "traits": "oops", "context": {"device": "iphone", "traits": None}}
    assert keys(event) == ["anonymous_id:a"]
    assert keys({}) == []


def test_types_missing_from_rules_are_not_extracted() -> None:
    rules = IdentityRules.model_validate({"types": {"anonymous_id": {"priority": 1}}})
    assert keys({"userId": "u", "anonymousId": "a", "traits": {"email": "x@y.io"}}, rules) == ["anonymous_id:a"]


def test_custom_type_with_email_normaliser() -> None:
    rules = IdentityRules.model_validate(
        {
            "types": {
                "user_id": {"priority": 1, "limit": 1},
                "work_email": {"priority": 2, "source": "workEmail", "normalise": "email"},
            }
        }
    )
    assert keys({"userId": "u", "traits": {"workEmail": " A@Corp.io"}}, rules) == ["user_id:u", "work_email:a@corp.io"]
    assert keys({"traits": {"workEmail": "nope"}}, rules) == []


def test_identifier_key_roundtrip() -> None:
    ident = Identifier("anonymous_id", "urn:x:1")
    assert ident.key == "anonymous_id:urn:x:1"
    assert Identifier.from_key(ident.key) == ident
    with pytest.raises(ValueError):
        Identifier.from_key("no-colon")


def test_primary_identifier() -> None:
    ids = extract_identifiers({"userId": "u", "anonymousId": "a"}, RULES)
    assert primary_identifier(ids) == Identifier("user_id", "u")
    assert primary_identifier([]) is None
