"""Raw events are keyed by one rule, whichever way they came in."""

from __future__ import annotations

from streams.keys import raw_event_key


def test_the_anonymous_id_keeps_a_visitor_on_one_partition_across_a_login() -> None:
    before = {"anonymousId": "a1", "messageId": "m1"}
    after = {"anonymousId": "a1", "userId": "u1", "messageId": "m2"}
    assert raw_event_key(before) == raw_event_key(after) == b"a1"


def test_then_the_user_id_the_previous_id_and_the_message_id() -> None:
    assert raw_event_key({"userId": 42, "messageId": "m"}) == b"42"
    assert raw_event_key({"previousId": "p", "messageId": "m"}) == b"p"
    assert raw_event_key({"anonymousId": "", "messageId": "m"}) == b"m"
    assert raw_event_key({}) is None
