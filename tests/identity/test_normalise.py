"""Normalisation is part of the public contract (trim + lower-case e-mails, E.164 phones)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from identity.normalise import Blocklist, _variants, is_junk, normalise_email, normalise_phone, to_text
from identity.rules import IdentityRules


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ann@example.com", "ann@example.com"),
        ("  Ann.Lee@Example.COM \n", "ann.lee@example.com"),
        ("mailto:ann@example.com", "ann@example.com"),
        ("first+tag@mail.example.co.uk", "first+tag@mail.example.co.uk"),
        ("email", None),
        ("ann@", None),
        ("@example.com", None),
        ("ann@localhost", None),
        ("ann@@example.com", None),
        ("a@b@example.com", None),
        ("ann lee@example.com", None),
        ("ann@.example.com", None),
        ("ann@example.com.", None),
        ("ann@example..com", None),
        ("", None),
    ],
)
def test_normalise_email(raw: str, expected: str | None) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+49 30 1234567", "US", "+49301234567"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        ("+1-415-555-2671 ext. 3", "US", "+14155552671"),
        ("0049301234567", "US", "+49301234567"),
        ("0049 30 1234567", "US", "+49301234567"),
        ("011 49 30 1234567", "US", "+49301234567"),
        ("030 1234567", "DE", "+49301234567"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("  +14155552671  ", "US", "+14155552671"),
        ("0000000000", "US", None),
        ("1111111111", "US", None),
        ("1234", "US", None),
        ("phone", "US", None),
        ("", "US", None),
    ],
)
def test_normalise_phone(raw: str, region: str, expected: str | None) -> None:
    assert normalise_phone(raw, region) == expected


def test_normalise_phone_default_region_is_us() -> None:
    assert normalise_phone("(415) 555-2671") == "+14155552671"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abc", "abc"),
        (12345, "12345"),
        (12345.0, "12345"),
        (1.5, "1.5"),
        (True, None),
        (False, None),
        (None, None),
        (float("nan"), None),
        (float("inf"), None),
        ({"id": 1}, None),
        ([1, 2], None),
    ],
)
def test_to_text(raw: object, expected: str | None) -> None:
    assert to_text(raw) == expected


DEFAULT_JUNK = [
    "",
    "   ",
    "undefined",
    "null",
    "NULL",
    " Null ",
    "none",
    "None",
    "nan",
    "NaN",
    "anonymous",
    "guest",
    "distinct_id",
    "id",
    "not_authenticated",
    "email",
    "true",
    "false",
    "[object Object]",
    "0",
    "-1",
    "00000000-0000-0000-0000-000000000000",
    "000",
    '"null"',
    "'null'",
    '"undefined"',
    "\"'null'\"",
    '""',
    "''",
    '"0"',
    '"[object Object]"',
]


@pytest.mark.parametrize("value", DEFAULT_JUNK)
def test_default_blocklist_catches_placeholders(value: str) -> None:
    rules = IdentityRules.load(None)
    assert is_junk(value, rules.blocklist)
    assert rules.is_blocked(value)


@pytest.mark.parametrize(
    "value",
    ["u-123", "ann@example.com", "10", "-10", "00000000-0000-0000-0000-000000000001", "identity", "nullable", "1"],
)
def test_default_blocklist_keeps_real_ids(value: str) -> None:
    assert not is_junk(value, IdentityRules.load(None).blocklist)


def test_blocklist_patterns_and_case() -> None:
    blocklist = Blocklist(values=["Guest"], patterns=[r"^test-\d+$"])
    assert is_junk("GUEST", blocklist)
    assert is_junk("'guest'", blocklist)
    assert is_junk("TEST-42", blocklist)
    assert not is_junk("test-x", blocklist)
    assert is_junk("", blocklist)


def test_blocklist_rejects_bad_pattern() -> None:
    with pytest.raises(ValueError, match="invalid blocklist pattern"):
        Blocklist(patterns=["("])


def test_blocklist_patterns_with_inline_flags_still_match() -> None:
    """A pattern with a global inline flag cannot be embedded in the combined alternation; each pattern is
    then searched on its own, with the same result."""
    blocklist = Blocklist(patterns=[r"(?x) ^ visitor - \d+ $", r"^n/?a$"])
    assert is_junk("visitor-7", blocklist)
    assert is_junk("N/A", blocklist)
    assert is_junk('"na"', blocklist)
    assert not is_junk("visitor-x", blocklist)


@given(st.text(alphabet=" \"'`nulNUL0-x", max_size=8))
def test_blocklist_fast_path_equals_every_variant(value: str) -> None:
    """`matches` skips peeling quotes when there are none: same answer as checking every variant."""
    blocklist = IdentityRules.load(None).blocklist
    expected = any(
        not v or v.casefold() in blocklist._exact or any(p.search(v) for p in blocklist._compiled)
        for v in _variants(value)
    )
    assert blocklist.matches(value) == expected
