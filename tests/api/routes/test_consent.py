"""Consent at the edge, on the apps with in-memory fakes: what the collector stamps on an event (its purposes, its
source's default), the 400 naming a bad field, a source's default, and POST /v1/consent as an event."""

from __future__ import annotations

from typing import Any

import orjson

from tests.api.routes.fixtures import ADMIN, READ, WRITE_KEY, client, error_of, sent, services


def consent_of(value: bytes | None) -> dict[str, Any]:
    return orjson.loads(value or b"{}")["context"]["consent"]


def test_the_collector_stamps_purposes_and_the_default_for_the_rest() -> None:
    s = services()
    c = client(s)
    choice = {"context": {"consent": {"categoryPreferences": {"Marketing": True, "Functional": False}}}}
    assert c.post("/v1/page", json={"anonymousId": "c1", **choice}, auth=(WRITE_KEY, "")).status_code == 200
    assert c.post("/v1/track", json={"anonymousId": "c1", "event": "E"}, auth=(WRITE_KEY, "")).status_code == 200
    (_, _, chose), (_, _, silent) = sent(s)
    assert consent_of(chose)["purposes"] == {"advertising": True, "personalization": False}
    assert consent_of(chose)["defaults"] == {"necessary": True, "analytics": True}
    assert consent_of(silent) == {
        "defaults": {"necessary": True, "analytics": True, "personalization": True, "advertising": False}
    }


def test_a_bad_consent_object_is_a_400_naming_the_field() -> None:
    s = services()
    body = {"anonymousId": "c1", "context": {"consent": {"categoryPreferences": {"Advertising": 1}}}}
    error = error_of(client(s).post("/v1/identify", json=body, auth=(WRITE_KEY, "")), 400)
    assert "context.consent.categoryPreferences.Advertising" in orjson.dumps(error).decode()
    assert sent(s) == []


def test_a_source_may_grant_advertising_without_a_consent_object() -> None:
    s = services()
    c = client(s)
    bad = c.post(
        "/v1/sources", json={"name": "x", "channel": "online", "consent_default": {"ads": True}}, headers=ADMIN
    )
    assert "consent_default.ads" in error_of(bad, 422)["error"]
    r = c.post(
        "/v1/sources",
        json={"name": "app", "channel": "mobile", "consent_default": {"advertising": True}},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    assert r.json()["consent_default"]["advertising"] is True
    key = r.json()["write_key"]
    assert c.post("/v1/screen", json={"anonymousId": "d1", "name": "Home"}, auth=(key, "")).status_code == 200
    assert consent_of(sent(s)[-1][2])["defaults"]["advertising"] is True


def test_consent_for_an_offline_identifier_is_an_event_on_the_offline_topic() -> None:
    s = services()
    c = client(s)
    body = {"id_type": "email", "value": " Ann@Example.com ", "categories": {"Advertising": False}}
    error_of(c.post("/v1/consent", json=body, headers=READ), 403)
    r = c.post("/v1/consent", json=body, headers=ADMIN)
    assert r.status_code == 202, r.text
    [(topic, _, value)] = sent(s)
    event = orjson.loads(value or b"{}")
    assert topic == s.topics.raw("offline") and event["messageId"] == r.json()["message_id"]
    assert event["event"] == "Segment Consent Preference Updated" and event["channel"] == "offline"
    assert event["context"]["traits"]["email"] == "ann@example.com"
    assert event["context"]["consent"]["purposes"] == {"advertising": False}
    for wrong, field in (({"id_type": "profile_id"}, "id_type"), ({"categories": {"Advertising": "no"}}, "categories")):
        assert field in error_of(c.post("/v1/consent", json={**body, **wrong}, headers=ADMIN), 422)["error"]
