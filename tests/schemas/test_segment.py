"""Segment-spec validation: what SDKs send must pass, what Segment refuses must fail with a field path."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.errors import EventError, FieldError
from schemas.segment import MAX_EVENT_BYTES, SegmentEvent, encoded_size, parse_batch, parse_event


def locs(exc: EventError) -> list[str]:
    return [e.loc for e in exc.errors]


def reject(payload: dict[str, Any], forced_type: str | None = None) -> EventError:
    with pytest.raises(EventError) as info:
        parse_event(payload, forced_type)
    return info.value


# ---------------------------------------------------------------------------------------------
# required fields per type
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("identify", {"userId": "u1", "traits": {"email": "a@b.c"}}),
        ("identify", {"anonymousId": "a1"}),
        ("track", {"anonymousId": "a1", "event": "Order Completed", "properties": {"revenue": 3}}),
        ("page", {"userId": "u1", "name": "Home"}),
        ("screen", {"anonymousId": "a1", "name": "Cart"}),
        ("group", {"userId": "u1", "groupId": "g1", "traits": {"plan": "pro"}}),
        ("alias", {"userId": "u1", "previousId": "a1"}),
    ],
)
def test_valid_events_of_every_type(event_type: str, payload: dict[str, Any]) -> None:
    event = parse_event(payload, event_type)
    assert event.type == event_type
    assert event.to_segment()["type"] == event_type


@pytest.mark.parametrize("event_type", ["identify", "track", "page", "screen", "group"])
def test_who_is_required(event_type: str) -> None:
    payload = {"event": "x", "groupId": "g"}
    exc = reject(payload, event_type)
    assert FieldError("userId", "userId or anonymousId is required") in exc.errors


def test_track_needs_event() -> None:
    assert locs(reject({"userId": "u"}, "track")) == ["event"]
    assert locs(reject({"userId": "u", "event": ""}, "track")) == ["event"]
    assert locs(reject({"userId": "u", "event": "   "}, "track")) == ["event"]
    # a non-string event name is a type error, reported once under the same path
    exc = reject({"userId": "u", "event": 5}, "track")
    assert exc.errors == [FieldError("event", "must be a string")]


def test_alias_needs_user_id_and_previous_id() -> None:
    assert locs(reject({"anonymousId": "a"}, "alias")) == ["userId", "previousId"]
    assert locs(reject({"userId": "u"}, "alias")) == ["previousId"]
    assert locs(reject({"previousId": "p"}, "alias")) == ["userId"]


def test_group_needs_group_id() -> None:
    assert locs(reject({"userId": "u"}, "group")) == ["groupId"]


def test_type_required_and_checked_without_endpoint() -> None:
    assert locs(reject({"userId": "u"})) == ["type"]
    exc = reject({"type": "purchase", "userId": "u"})
    assert exc.errors[0].loc == "type"
    assert "track" in exc.errors[0].msg
    assert parse_event({"type": "Track", "userId": "u", "event": "e"}, None).type == "track"


def test_forced_type_overrides_body_type() -> None:
    event = parse_event({"type": "identify", "userId": "u", "event": "Signed Up"}, "track")
    assert event.type == "track"


def test_blank_ids_count_as_missing() -> None:
    assert locs(reject({"userId": "", "anonymousId": "  "}, "identify")) == ["userId"]


def test_not_an_object() -> None:
    with pytest.raises(EventError) as info:
        parse_event([1, 2], "track")  # type: ignore[arg-type]
    assert info.value.errors == [FieldError("", "event must be a JSON object")]


# ---------------------------------------------------------------------------------------------
# field types
# ---------------------------------------------------------------------------------------------


def test_numeric_ids_are_coerced_to_strings() -> None:
    event = parse_event({"userId": 42, "anonymousId": 7.0, "groupId": 1.5, "messageId": 9, "traits": {}}, "group")
    assert (event.user_id, event.anonymous_id, event.group_id, event.message_id) == ("42", "7", "1.5", "9")
    assert event.to_segment()["userId"] == "42"


@pytest.mark.parametrize("bad", [{"id": 1}, [1], True, False])
def test_object_array_bool_ids_rejected(bad: Any) -> None:
    exc = reject({"userId": bad, "event": "x"}, "track")
    assert locs(exc) == ["userId"]
    assert "string or a number" in exc.errors[0].msg


def test_rejected_id_is_not_also_reported_missing() -> None:
    exc = reject({"anonymousId": {"x": 1}, "event": "e"}, "track")
    assert exc.errors == [FieldError("anonymousId", "must be a string or a number")]


@pytest.mark.parametrize("field", ["traits", "properties", "context", "integrations"])
@pytest.mark.parametrize("bad", [[1], "text", 3])
def test_object_fields_must_be_objects(field: str, bad: Any) -> None:
    exc = reject({"userId": "u", "event": "e", field: bad}, "track")
    assert exc.errors == [FieldError(field, "must be a JSON object")]


def test_errors_are_collected_together() -> None:
    exc = reject({"userId": [1], "context": [], "timestamp": "yesterday"}, "track")
    assert sorted(locs(exc)) == ["context", "event", "timestamp", "userId"]


@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt", "receivedAt"])
def test_bad_timestamp_names_the_field(field: str) -> None:
    exc = reject({"userId": "u", "event": "e", field: "31/12/2024 10:00"}, "track")
    assert locs(exc) == [field]
    assert "ISO-8601" in exc.errors[0].msg


def test_numeric_timestamp_rejected() -> None:
    assert locs(reject({"userId": "u", "event": "e", "timestamp": 1700000000}, "track")) == ["timestamp"]


def test_timestamps_parse_to_aware_datetimes() -> None:
    event = parse_event(
        {
            "userId": "u",
            "event": "e",
            "timestamp": "2024-05-01T10:00:00.123Z",
            "originalTimestamp": "2024-05-01T12:00:00+02:00",
            "sentAt": "2024-05-01T10:00:01",  # naive: taken as UTC
        },
        "track",
    )
    assert event.timestamp == datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert event.original_timestamp is not None
    assert event.original_timestamp.utcoffset() == timedelta(hours=2)
    assert event.sent_at == datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC)
    assert event.sent_at.tzinfo is not None


def test_dump_gives_back_segment_camel_case_and_keeps_extras() -> None:
    payload = {
        "type": "track",
        "messageId": "m1",
        "anonymousId": "a1",
        "userId": "u1",
        "event": "Clicked",
        "properties": {"k": [1, {"x": None}]},
        "context": {"library": {"name": "analytics.js"}},
        "integrations": {"All": True},
        "timestamp": "2024-05-01T10:00:00Z",
        "channel": "browser",
        "user_id": "not-the-user-id",  # snake_case is an unknown field for Segment, kept as is
        "customTopLevel": {"a": 1},
        "writeKey": "wk_secret",
    }
    event = parse_event(payload, None)
    assert event.user_id == "u1"
    assert event.write_key == "wk_secret"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic serializer warnings would mean a type mismatch
        dumped = event.model_dump(by_alias=True, exclude_none=True)
        as_json = event.to_segment()
    assert dumped["userId"] == "u1"
    assert dumped["user_id"] == "not-the-user-id"
    assert dumped["customTopLevel"] == {"a": 1}
    assert "writeKey" not in dumped and "writeKey" not in as_json
    assert "user_id" in as_json and "messageId" in as_json and "anonymousId" in as_json
    assert as_json["timestamp"] == "2024-05-01T10:00:00Z"
    expected = {k: v for k, v in payload.items() if k != "writeKey"}
    assert as_json == expected


def test_model_can_be_built_in_code() -> None:
    event = SegmentEvent.model_validate({"type": "page", "anonymousId": "a"})
    assert event.to_segment() == {"type": "page", "anonymousId": "a"}


def test_oversized_single_event() -> None:
    exc = reject({"userId": "u", "event": "e", "properties": {"blob": "x" * MAX_EVENT_BYTES}}, "track")
    assert exc.errors == [FieldError("", f"event exceeds {MAX_EVENT_BYTES} bytes")]


# ---------------------------------------------------------------------------------------------
# batch
# ---------------------------------------------------------------------------------------------


def test_batch_mixed_good_and_bad_items() -> None:
    payload = {
        "batch": [
            {"type": "track", "event": "A", "userId": "u"},
            {"type": "track", "userId": "u"},  # no event
            "not an object",
            {"type": "identify", "anonymousId": "a", "traits": {"x": 1}},
            {"event": "B", "userId": "u"},  # no type
            {"type": "alias", "userId": {"bad": 1}},
        ]
    }
    good, bad = parse_batch(payload)
    assert [e.type for e in good] == ["track", "identify"]
    assert [b.index for b in bad] == [1, 2, 4, 5]
    by_index = {b.index: [e.loc for e in b.errors] for b in bad}
    assert by_index[1] == ["batch[1].event"]
    assert by_index[2] == ["batch[2]"]
    assert by_index[4] == ["batch[4].type"]
    assert by_index[5] == ["batch[5].userId", "batch[5].previousId"]
    assert bad[0].to_dict()["errors"][0]["loc"] == "batch[1].event"


@pytest.mark.parametrize("bad", [None, {"type": "track"}, "[]", 5])
def test_batch_not_a_list(bad: Any) -> None:
    with pytest.raises(EventError) as info:
        parse_batch({"batch": bad} if bad is not None else {})
    assert info.value.errors == [FieldError("batch", "must be an array of events")]
    body = info.value.to_body()
    assert body["success"] is False
    assert body["errors"] == [{"loc": "batch", "msg": "must be an array of events"}]


def test_empty_batch() -> None:
    assert parse_batch({"batch": []}) == ([], [])


def test_oversized_item_rejected_alone() -> None:
    big = {"type": "track", "event": "A", "userId": "u", "properties": {"blob": "x" * MAX_EVENT_BYTES}}
    small = {"type": "track", "event": "B", "userId": "u"}
    good, bad = parse_batch({"batch": [small, big, small]})
    assert len(good) == 2
    assert [b.index for b in bad] == [1]
    assert bad[0].errors == [FieldError("batch[1]", "event exceeds 32768 bytes")]


def test_item_at_limit_accepted_even_with_large_batch_context() -> None:
    props: dict[str, Any] = {"blob": ""}
    base: dict[str, Any] = {"type": "track", "event": "A", "userId": "u", "properties": props}
    props["blob"] = "x" * (MAX_EVENT_BYTES - encoded_size(base))
    assert encoded_size(base) == MAX_EVENT_BYTES
    good, bad = parse_batch({"batch": [base], "context": {"pad": "y" * 1000}})
    assert bad == [] and len(good) == 1


def test_batch_context_and_integrations_merged_item_wins() -> None:
    payload = {
        "batch": [
            {
                "type": "track",
                "event": "A",
                "userId": "u",
                "context": {"page": {"path": "/a"}, "ip": "9.9.9.9"},
            },
            {"type": "track", "event": "B", "userId": "u", "integrations": {"Mixpanel": False}},
            {
                "type": "track",
                "event": "C",
                "userId": "u",
                "context": {"library": {"version": "2.0"}},
            },
        ],
        "context": {"library": {"name": "analytics-node", "version": "1.0"}, "ip": "1.1.1.1"},
        "integrations": {"All": True, "Mixpanel": True},
    }
    good, bad = parse_batch(payload)
    assert bad == []
    a, b, c = good
    assert a.context == {
        "library": {"name": "analytics-node", "version": "1.0"},
        "ip": "9.9.9.9",
        "page": {"path": "/a"},
    }
    assert b.context == {"library": {"name": "analytics-node", "version": "1.0"}, "ip": "1.1.1.1"}
    assert b.integrations == {"All": True, "Mixpanel": False}
    assert a.integrations == {"All": True, "Mixpanel": True}
    assert c.context is not None and c.context["library"] == {"name": "analytics-node", "version": "2.0"}
    # items never share mutable dicts with each other or with the request
    assert a.context is not b.context
    assert b.context is not None
    b.context["library"]["name"] = "changed"
    assert payload["context"]["library"]["name"] == "analytics-node"  # type: ignore[index]
    assert a.context["library"]["name"] == "analytics-node"


def test_batch_level_sent_at_fills_items() -> None:
    payload = {
        "sentAt": "2024-05-01T10:00:05Z",
        "batch": [
            {"type": "track", "event": "A", "userId": "u"},
            {"type": "track", "event": "B", "userId": "u", "sentAt": "2024-05-01T10:00:09Z"},
        ],
    }
    good, _ = parse_batch(payload)
    assert good[0].sent_at == datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)
    assert good[1].sent_at == datetime(2024, 5, 1, 10, 0, 9, tzinfo=UTC)


def test_batch_envelope_errors() -> None:
    with pytest.raises(EventError) as info:
        parse_batch({"batch": [], "context": [1], "sentAt": "soon"})
    assert sorted(e.loc for e in info.value.errors) == ["context", "sentAt"]


def test_batch_item_with_non_object_context_is_an_item_error() -> None:
    good, bad = parse_batch({"batch": [{"type": "page", "userId": "u", "context": "x"}], "context": {"a": 1}})
    assert good == []
    assert bad[0].errors == [FieldError("batch[0].context", "must be a JSON object")]


def test_items_carry_their_own_type() -> None:
    good, bad = parse_batch(
        {
            "batch": [
                {"type": "identify", "userId": "u"},
                {"type": "page", "anonymousId": "a"},
                {"type": "screen", "anonymousId": "a"},
                {"type": "group", "userId": "u", "groupId": "g"},
                {"type": "alias", "userId": "u", "previousId": "a"},
                {"type": "track", "userId": "u", "event": "e"},
            ]
        }
    )
    assert bad == []
    assert [e.type for e in good] == ["identify", "page", "screen", "group", "alias", "track"]


# ---------------------------------------------------------------------------------------------
# robustness: arbitrary JSON never escapes as anything but EventError
# ---------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "previousId",
        "groupId",
        "event",
        "name",
        "traits",
        "properties",
        "context",
        "integrations",
        "timestamp",
        "sentAt",
        "messageId",
        "writeKey",
        "channel",
        "other",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    payload=st.dictionaries(field_names, json_values, max_size=8),
    forced=st.sampled_from([None, "track", "alias"]),
)
def test_arbitrary_payloads_only_raise_event_error(payload: dict[str, Any], forced: str | None) -> None:
    try:
        event = parse_event(payload, forced)
    except EventError as exc:
        assert exc.errors
        assert all(isinstance(e.loc, str) and e.msg for e in exc.errors)
    else:
        dumped = event.to_segment()
        assert dumped["type"] in {"identify", "track", "page", "screen", "group", "alias"}
        assert "writeKey" not in dumped


def test_offsets_preserved_in_dump() -> None:
    event = parse_event({"userId": "u", "originalTimestamp": "2024-05-01T12:00:00+02:00"}, "identify")
    assert event.original_timestamp == datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert event.to_segment()["originalTimestamp"] == "2024-05-01T12:00:00+02:00"


@pytest.mark.parametrize("kind", [[], ["track"], {"t": 1}, 5])
def test_a_type_that_is_not_a_string_is_a_field_error(kind: Any) -> None:
    """A list or an object as ``type`` must be the client's 400 naming the field, not an unhashable crash."""
    from schemas.segment import accept_batch, accept_event

    with pytest.raises(EventError) as err:
        accept_event({"type": kind, "anonymousId": "a", "event": "x"})
    assert any(e.loc == "type" for e in err.value.errors)
    _, rejected = accept_batch({"batch": [{"type": kind, "anonymousId": "a", "event": "x"}]})
    assert [e.index for e in rejected] == [0]
