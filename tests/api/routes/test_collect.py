"""The collector's routes over a recording producer: what reaches Kafka, under which key, and the answers."""

from __future__ import annotations

import orjson

from streams.keys import HINT_HEADER, StitchHint
from streams.producer import CHECKED_HEADER
from tests.api.routes.fixtures import WRITE_KEY, client, sent, sent_headers, services


def test_an_accepted_event_is_produced_enriched_under_its_key() -> None:
    s = services()
    r = client(s).post("/v1/track", json={"event": "Viewed", "anonymousId": "a1", "userId": "u1"}, auth=(WRITE_KEY, ""))
    assert r.status_code == 200 and r.json() == {"success": True}
    [(topic, key, value)] = sent(s)
    assert topic == "t.events.online" and key == b"user_id:u1"  # its primary identifier's node
    event = orjson.loads(value or b"")
    assert (event["type"], event["channel"], event["sourceId"]) == ("track", "online", "web")
    assert "writeKey" not in event and event["receivedAt"]
    # Validated here: the stitcher need not validate it again, and the hint spares it decoding the event.
    [[checked, (hint_name, hint)]] = sent_headers(s)  # type: ignore[misc]
    assert checked == CHECKED_HEADER and hint_name == HINT_HEADER
    assert StitchHint.decode(hint).keys == ("user_id:u1", "anonymous_id:a1")  # type: ignore[arg-type,union-attr]


def test_the_write_key_may_come_in_the_body() -> None:
    s = services()
    r = client(s).post("/v1/identify", json={"userId": "u1", "writeKey": WRITE_KEY})
    assert r.status_code == 200, r.text
    assert orjson.loads(sent(s)[0][2] or b"")["type"] == "identify"


def test_a_mixed_batch_keeps_the_good_items_and_dead_letters_the_rest() -> None:
    s = services()
    batch = {"batch": [{"type": "track", "event": "ok", "anonymousId": "a"}, {"type": "track", "anonymousId": "b"}]}
    r = client(s).post("/v1/batch", json=batch, auth=(WRITE_KEY, ""))
    body = r.json()
    assert (body["success"], body["accepted"]) == (True, 1)
    assert [(x["index"], [e["loc"] for e in x["errors"]]) for x in body["rejected"]] == [(1, ["batch[1].event"])]
    topics = [topic for topic, _, _ in sent(s)]
    assert topics == ["t.events.online", "t.deadletter"]
    dead = orjson.loads(sent(s)[1][2] or b"")
    assert dead["reason"].startswith("batch[1].event: required") and dead["event"] == batch["batch"][1]


def test_a_source_with_a_phone_region_sends_its_national_phones_as_e164() -> None:
    s = services()
    assert s.sources is not None
    source = {"write_key": "wk_fr", "name": "shop-fr", "channel": "online", "created_at_ms": 1}
    s.sources.apply("wk_fr", orjson.dumps({**source, "config": {"phone_region": "FR"}}))
    body = {"userId": "u1", "traits": {"phone": "06 12 34 56 78"}}
    assert client(s).post("/v1/identify", json=body, auth=("wk_fr", "")).status_code == 200
    [(_, _, value)] = sent(s)
    assert orjson.loads(value or b"")["traits"]["phone"] == "+33612345678"


def test_traits_that_are_identifiers_are_sent_as_their_identifiers_are_spelt() -> None:
    s = services()
    traits = {"email": "  Alice.Martin@Example.COM ", "phone": "+1 (415) 555-2671", "name": "  Alice  "}
    body = {"userId": "u1", "traits": traits, "context": {"traits": {"email": "BOB@Example.com"}}}
    assert client(s).post("/v1/identify", json=body, auth=(WRITE_KEY, "")).status_code == 200
    [(_, _, value)] = sent(s)
    event = orjson.loads(value or b"")
    assert event["traits"] == {"email": "alice.martin@example.com", "phone": "+14155552671", "name": "  Alice  "}
    assert event["context"]["traits"]["email"] == "bob@example.com"
