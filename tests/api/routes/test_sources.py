"""Sources over HTTP (the console's Sources page), on the query app with in-memory fakes for Kafka and the
sources topic: the admin token creates an SDK source and gets its write key and snippet; other tokens see the
list without keys."""

from __future__ import annotations

import orjson

from tests.api.routes.fixtures import ADMIN, READ, WRITE_KEY, client, error_of, sent, services


def test_the_admin_token_lists_write_keys_and_snippets_naming_this_installation() -> None:
    c = client(services())
    c.base_url = "http://cdp.test:8080"
    (web,) = c.get("/v1/sources", headers=ADMIN).json()["sources"]
    assert web["write_key"] == WRITE_KEY
    assert f'analytics._writeKey = "{WRITE_KEY}";' in web["snippet"]
    assert 'analytics._cdn = "http://cdp.test:8080";' in web["snippet"]
    assert f'src="/analytics.js/v1/{WRITE_KEY}/analytics.min.js"' in web["snippet"]


def test_the_read_token_lists_sources_without_keys_and_may_not_create_one() -> None:
    c = client(services())
    (web,) = c.get("/v1/sources", headers=READ).json()["sources"]
    default = {"necessary": True, "analytics": True, "personalization": True, "advertising": False}
    assert web == {"name": "web", "channel": "online", "kind": "sdk", "created_at_ms": 1, "consent_default": default}
    error_of(c.post("/v1/sources", json={"name": "shop", "channel": "online"}, headers=READ), 403)


def test_a_created_source_is_in_the_sources_topic_and_its_key_is_known_at_once() -> None:
    s = services()
    c = client(s)
    r = c.post("/v1/sources", json={"name": " shop ", "channel": "mobile"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == "shop" and created["channel"] == "mobile" and created["write_key"].startswith("wk_")
    ((topic, key, value),) = sent(s)
    assert topic == s.topics.sources and key == created["write_key"].encode()
    assert orjson.loads(value or b"{}")["kind"] == "sdk"
    assert s.sources is not None and s.sources.get(created["write_key"]) is not None


def test_a_source_needs_a_known_channel_and_a_name() -> None:
    c = client(services())
    assert (
        "channel" in error_of(c.post("/v1/sources", json={"name": "x", "channel": "tv"}, headers=ADMIN), 422)["error"]
    )
    error_of(c.post("/v1/sources", json={"name": "  ", "channel": "online"}, headers=ADMIN), 422)
    error_of(c.post("/v1/sources", json={"channel": "online"}, headers=ADMIN), 422)
