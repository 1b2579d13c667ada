"""The mapping grammar and its value types (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.mapping import EventMapping, MappingError, convert, parse_field


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("identifier email", ("identifier", "email", "auto")),
        ("identifier crm_id text", ("identifier", "crm_id", "text")),
        ("trait", ("trait", "plan", "auto")),
        ("trait number", ("trait", "plan", "number")),
        ("trait tier text", ("trait", "tier", "text")),
        ("property revenue minor_units", ("property", "revenue", "minor_units")),
        ("timestamp", ("timestamp", "timestamp", "timestamp")),
        ("timestamp epoch_s", ("timestamp", "timestamp", "epoch_s")),
    ],
)
def test_field_specs(spec: str, expected: tuple[str, str, str]) -> None:
    f = parse_field("a.plan", spec)
    assert (f.role, f.name, f.type) == expected and f.path == ("a", "plan")


@pytest.mark.parametrize("spec", ["identifier", "colour", "trait a b c", "timestamp when", ""])
def test_bad_field_specs(spec: str) -> None:
    with pytest.raises(MappingError, match=r"fields\.x"):
        parse_field("x", spec)


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("12,50", "number", 12.5),
        (3, "number", 3.0),
        ("7", "integer", 7),
        (7, "text", "7"),
        ("t", "boolean", True),
        (0, "boolean", False),
        (1_714_557_600_000, "timestamp", "2024-05-01T10:00:00.000Z"),
        ("2024-05-01 12:00:00+02:00", "timestamp", "2024-05-01T10:00:00.000Z"),
        ("2024-05-01T10:00:00", "timestamp", "2024-05-01T10:00:00.000Z"),  # naive = UTC
        (19844, "date", "2024-05-01"),
        (1_714_557_600, "epoch_s", "2024-05-01T10:00:00.000Z"),
        (1_714_557_600_500, "epoch_ms", "2024-05-01T10:00:00.500Z"),
        ({"a": [1]}, "json", {"a": [1]}),
        (None, "number", None),
    ],
)
def test_conversions(value: Any, kind: str, expected: Any) -> None:
    assert convert(value, kind, "f") == expected


def test_minor_units_follow_the_currency_beside_them() -> None:
    assert convert(1250, "minor_units", "amount", {"currency": "usd"}) == 12.5
    assert convert(1250, "minor_units", "amount", {"currency": "JPY"}) == 1250.0


@pytest.mark.parametrize(("value", "kind"), [("abc", "number"), (True, "number"), ("maybe", "boolean"), ("x", "date")])
def test_a_value_that_does_not_fit_names_the_field(value: Any, kind: str) -> None:
    with pytest.raises(MappingError, match=r"^col: "):
        convert(value, kind, "col")


def test_missing_fields_are_left_out_and_nulls_unset_traits() -> None:
    m = EventMapping.parse(
        {"type": "identify", "fields": {"email": "identifier email", "plan": "trait", "seats": "trait integer"}}
    )
    assert m.build({"email": "a@b.c", "plan": None}) == {
        "type": "identify",
        "traits": {"email": "a@b.c", "plan": None},
    }
    assert m.build({"email": "a@b.c"}, unset_traits=True)["traits"] == {"email": "a@b.c", "plan": None, "seats": None}
