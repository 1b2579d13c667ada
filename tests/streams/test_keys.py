"""Raw events are keyed by one rule, whichever way they came in: the node key of their primary identifier."""

from __future__ import annotations

from identity.rules import IdentityRules
from streams.keys import raw_event_key
from streams.partitioner import partition_for

RULES = IdentityRules.load(None)


def test_the_key_is_the_primary_identifiers_node() -> None:
    assert raw_event_key({"anonymousId": "a1", "messageId": "m1"}, RULES) == b"anonymous_id:a1"
    logged_in = {"anonymousId": "a1", "userId": "u1", "messageId": "m2", "context": {"traits": {"email": "X@y.io"}}}
    assert raw_event_key(logged_in, RULES) == b"user_id:u1"
    assert raw_event_key({"traits": {"email": " Ann@X.io "}, "messageId": "m"}, RULES) == b"email:ann@x.io"


def test_so_the_event_lands_on_its_primarys_partition() -> None:
    event = {"anonymousId": "a1", "userId": "u1", "messageId": "m2"}
    key = raw_event_key(event, RULES)
    assert key is not None and partition_for(key.decode(), 4) == partition_for("user_id:u1", 4)


def test_without_a_usable_identifier_the_message_id() -> None:
    assert raw_event_key({"anonymousId": "undefined", "messageId": "m"}, RULES) == b"m"
    assert raw_event_key({"userId": "null"}, RULES) is None
