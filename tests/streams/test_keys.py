"""Raw events are keyed by one rule, whichever way they came in: the node key of their primary identifier."""

from __future__ import annotations

import orjson

from identity.extract import identifier_keys
from identity.rules import IdentityRules
from streams.keys import HINT_HEADER, StitchHint, raw_event_key, raw_event_record
from streams.partitioner import partition_for
from streams.producer import CHECKED_HEADER

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


def test_a_raw_event_record_carries_the_key_and_the_stitch_hint_of_its_event() -> None:
    event = {
        "type": "identify",
        "messageId": "m1",
        "anonymousId": "a1",
        "traits": {"email": " Ann@X.io "},
        "timestamp": "2026-01-01T00:00:01.500Z",
        "receivedAt": "2026-01-01T00:00:02.000Z",
    }
    topic, key, value, headers = raw_event_record("t.events.online", event, RULES)
    assert (topic, key, orjson.loads(value)) == ("t.events.online", raw_event_key(event, RULES), event)
    assert headers[0] == CHECKED_HEADER
    (hint_bytes,) = [v for n, v in headers if n == HINT_HEADER]
    hint = StitchHint.decode(hint_bytes)  # type: ignore[arg-type]
    assert hint == StitchHint(
        RULES.fingerprint, 1_767_225_601_500, 1_767_225_602_000, "m1", identifier_keys(event, RULES)
    )
    assert hint.keys[0].encode() == key


def test_no_stitch_hint_without_a_message_id_and_none_decoded_from_junk() -> None:
    _, _, _, headers = raw_event_record("t", {"anonymousId": "a1"}, RULES)
    assert headers == [CHECKED_HEADER]
    for junk in (b"", b"{}", b"[1]", b'["r", "1", null, "m"]', b'["r", 1, null, "m", 5]'):
        assert StitchHint.decode(junk) is None


def test_the_rules_digest_changes_with_the_rules() -> None:
    assert RULES.fingerprint == IdentityRules.load(None).fingerprint
    other = IdentityRules.model_validate({**RULES.model_dump(), "max_identifiers_per_profile": 7})
    assert other.fingerprint != RULES.fingerprint
