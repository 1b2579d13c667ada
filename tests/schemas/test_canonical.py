"""The collector's canonical dicts: the fast path (plain events) and the model path must agree on every payload.

``accept_event`` / ``accept_batch`` skip pydantic for events whose fields are already canonical. These
properties hold the shortcut to the model: same acceptance, same errors, same output dict.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.errors import EventError
from schemas.segment import (
    _accept,
    _canonical,
    _plain,
    _validate,
    accept_batch,
    accept_event,
    parse_batch,
    parse_event,
)

ids = st.one_of(
    st.none(),
    st.sampled_from(["u1", "a-b", " ", "", "ünï", "0"]),
    st.text(max_size=8),
    st.integers(-5, 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.just({"id": 1}),
    st.just([1]),
)
strings = st.one_of(st.none(), st.text(max_size=6), st.integers(0, 3), st.booleans(), st.just(["x"]))
objects = st.one_of(st.none(), st.just({}), st.just({"a": None, "b": {"c": 1}}), st.text(max_size=3), st.just([1]))
timestamps = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00.123+02:00",
            "2024-05-01 10:00:00",
            "2024-05-01",
            "yesterday",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "",
        ]
    ),
    st.integers(0, 2**40),
)
types = st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "Track", " page ", "bogus", 3, None])

FIELDS: dict[str, Any] = {
    "type": types,
    "messageId": ids,
    "anonymousId": ids,
    "userId": ids,
    "previousId": ids,
    "groupId": ids,
    "event": strings,
    "name": strings,
    "category": strings,
    "channel": strings,
    "writeKey": strings,
    "traits": objects,
    "properties": objects,
    "context": objects,
    "integrations": objects,
    "timestamp": timestamps,
    "originalTimestamp": timestamps,
    "sentAt": timestamps,
    "receivedAt": timestamps,
    "custom": st.one_of(st.none(), st.integers(), st.text(max_size=3)),
    "user_id": st.one_of(st.none(), st.text(max_size=3)),
}


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=len(FIELDS)))
    return {key: draw(FIELDS[key]) for key in keys}


def model_path(payload: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Any]]:
    event, errors = _validate(payload, "")
    return (None if event is None else _canonical(payload, event)), errors


@settings(max_examples=1000, deadline=None)
@given(payloads())
def test_fast_path_agrees_with_the_model(payload: dict[str, Any]) -> None:
    assert _accept(payload, "") == model_path(payload)


@settings(max_examples=500, deadline=None)
@given(payloads())
def test_fast_path_only_takes_what_the_model_accepts_unchanged(payload: dict[str, Any]) -> None:
    fast = _plain(payload)
    if fast is None:
        return
    event, errors = _validate(payload, "")
    if event is None:  # the fast path checks types; the per-type rules still decide
        assert errors
        return
    assert fast == _canonical(payload, event)


def test_plain_sdk_events_take_the_fast_path() -> None:
    event = {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "a1",
        "userId": "u1",
        "messageId": "m1",
        "properties": {"revenue": 9.5, "missing": None},
        "context": {"library": {"name": "analytics.js"}},
        "timestamp": "2024-05-01T10:00:00.123Z",
        "writeKey": "secret",
        "extra": [1, 2],
        "nothing": None,
    }
    fast = _plain(event)
    assert fast is not None
    assert "writeKey" not in fast and "nothing" not in fast
    assert fast["properties"] == {"revenue": 9.5, "missing": None}  # nested nulls are data, kept
    assert isinstance(fast["timestamp"], datetime) and fast["timestamp"].utcoffset() is not None
    assert fast["extra"] == [1, 2]


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "Track", "event": "e", "userId": "u"},
        {"type": "track", "event": "e", "userId": 42},
        {"type": "track", "event": "e", "userId": " ", "anonymousId": "a"},
        {"type": "track", "event": "e", "userId": "u", "timestamp": 5},
    ],
)
def test_unusual_events_go_through_the_model(payload: dict[str, Any]) -> None:
    assert _plain(payload) is None
    out, errors = _accept(payload, "")
    assert out == model_path(payload)[0]
    assert errors == model_path(payload)[1]


def test_accept_event_coerces_like_the_model() -> None:
    out = accept_event({"userId": 42, "event": "x", "type": "identify"}, "track")
    model = parse_event({"userId": 42, "event": "x", "type": "identify"}, "track")
    assert out["type"] == model.type == "track"
    assert out["userId"] == model.user_id == "42"


def test_accept_event_reports_the_same_errors_as_parse_event() -> None:
    bad = {"userId": True, "event": ["x"], "properties": "p"}
    with pytest.raises(EventError) as fast:
        accept_event(bad, "track")
    with pytest.raises(EventError) as slow:
        parse_event(bad, "track")
    assert fast.value.errors == slow.value.errors


@settings(max_examples=300, deadline=None)
@given(st.lists(payloads(), max_size=6), st.one_of(st.none(), st.just({"library": {"name": "x"}})))
def test_accept_batch_matches_parse_batch(items: list[dict[str, Any]], context: dict[str, Any] | None) -> None:
    body: dict[str, Any] = {"batch": items}
    if context is not None:
        body["context"] = context
    good, bad = accept_batch(body)
    models, model_bad = parse_batch(body)
    assert bad == model_bad
    assert len(good) == len(models)
    for out, model in zip(good, models, strict=True):
        assert out["type"] == model.type
        assert out.get("userId") == model.user_id
        assert out.get("anonymousId") == model.anonymous_id
        assert out.get("context") == model.context
