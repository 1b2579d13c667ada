"""Audiences end to end: created over HTTP, membership kept current by the stream, served by the lookup
index, every change on the activation topic."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Consumer

from tests.e2e.fixtures import in_list
from tests.support.service import CdpProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cdp(kafka, tmp_path_factory):
    prefix = f"t{uuid.uuid4().hex[:10]}"
    service = CdpProcess(
        kafka.bootstrap, tmp_path_factory.mktemp("aud") / "data", prefix, CDP_AUDIENCE_WINDOW_REFRESH_S="1"
    ).start()
    service.wait_ready()
    yield service
    assert service.stop() == 0, service.output()[-3000:]


ADS_YES = {"consent": {"categoryPreferences": {"Advertising": True}}}  # the DMP side serves consenting cookies only
ADS_NO = {"consent": {"categoryPreferences": {"Advertising": False}}}


def create(cdp: CdpProcess, body: dict) -> httpx.Response:
    return httpx.post(f"{cdp.url}/v1/audiences", json=body, headers=cdp.admin_headers(), timeout=30)


def track(cdp: CdpProcess, anon: str, **event) -> None:
    r = httpx.post(
        f"{cdp.url}/v1/batch",
        json={"batch": [{"anonymousId": anon, **event}]},
        auth=(cdp.write_keys["online"], ""),
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


def lookup(cdp: CdpProcess, id_type: str, value: str) -> list[str]:
    r = httpx.get(f"{cdp.url}/v1/lookup/{id_type}/{value}", headers={"Authorization": f"Bearer {cdp.read_token}"})
    assert r.status_code == 200, r.text
    return r.json()["audiences"]


def wait_lookup(cdp: CdpProcess, id_type: str, value: str, audience: str, present: bool, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if (audience in lookup(cdp, id_type, value)) == present:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{audience} {'not in' if present else 'still in'} lookup of {id_type}:{value}")


def changes(cdp: CdpProcess, audience: str, timeout: float = 20) -> list[dict]:
    consumer = Consumer(
        {"bootstrap.servers": cdp.bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([f"{cdp.topic_prefix}.audience.changes"])
    found, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in consumer.consume(500, timeout=0.5):
            if not m.error() and m.value():
                v = orjson.loads(m.value())
                if v["audience_id"] == audience:
                    found.append(v)
        if {c["status"] for c in found} >= {"entered", "exited"}:
            break
    consumer.close()
    return found


def test_enter_on_qualifying_event_exit_on_later_event(cdp: CdpProcess) -> None:
    rule = {
        "all": [
            {
                "event": None,
                "type": "page",
                "where": [{"property": "path", "op": "eq", "value": "/pricing"}],
                "within_days": 7,
            },
            {"not": {"event": "Order Completed", "type": "track"}},
        ]
    }
    r = create(cdp, {"name": "Pricing, no purchase", "scope": "profile", "rule": rule})
    assert r.status_code == 201, r.text
    audience = r.json()["id"]
    anon = f"a-{uuid.uuid4().hex[:8]}"
    track(cdp, anon, type="page", name="Pricing", properties={"path": "/pricing"})
    entered_after = wait_lookup(cdp, "anonymous_id", anon, audience, True, timeout=5)
    track(cdp, anon, type="track", event="Order Completed", properties={"revenue": 99})
    exited_after = wait_lookup(cdp, "anonymous_id", anon, audience, False, timeout=5)
    statuses = [c["status"] for c in changes(cdp, audience)]
    assert statuses == ["entered", "exited"], statuses
    print(f"entered after {entered_after:.2f} s, exited after {exited_after:.2f} s")
    members = httpx.get(f"{cdp.url}/v1/audiences/{audience}/members", headers=cdp.admin_headers())
    assert members.status_code == 200 and members.text == ""  # nobody left


def test_exit_when_the_window_passes(cdp: CdpProcess) -> None:
    rule = {"event": "Viewed Offer", "type": "track", "within_days": 1}
    audience = create(cdp, {"name": "Offer, last day", "scope": "anonymous", "rule": rule}).json()["id"]
    anon = f"a-{uuid.uuid4().hex[:8]}"
    almost_a_day_ago = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=8)
    track(cdp, anon, type="track", event="Viewed Offer", timestamp=almost_a_day_ago.isoformat(), context=ADS_YES)
    wait_lookup(cdp, "anonymous_id", anon, audience, True, timeout=5)
    wait_lookup(cdp, "anonymous_id", anon, audience, False, timeout=20)  # the window passes, nothing is sent
    assert [c["status"] for c in changes(cdp, audience)] == ["entered", "exited"]


def test_invalid_rules_get_422_with_the_path(cdp: CdpProcess) -> None:
    bad = {"name": "x", "scope": "profile", "rule": {"all": [{"trait": "plan", "op": "like", "value": "a"}]}}
    r = create(cdp, bad)
    assert r.status_code == 422
    assert "rule.all[0].op" in r.text
    r = create(cdp, {"name": "x", "scope": "anonymous", "rule": {"trait": "email", "op": "exists"}})
    assert r.status_code == 422


def test_lookup_unknown_and_bad_type(cdp: CdpProcess) -> None:
    assert lookup(cdp, "anonymous_id", "never-seen") == []
    r = httpx.get(f"{cdp.url}/v1/lookup/shoe_size/42", headers={"Authorization": f"Bearer {cdp.read_token}"})
    assert r.status_code == 400 and "id_type" in r.json()["error"]
    r = httpx.get(f"{cdp.url}/v1/lookup/anonymous_id/x")
    assert r.status_code == 401


def test_profile_api(cdp: CdpProcess) -> None:
    anon, user = f"a-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    track(cdp, anon, type="page", name="Home", properties={"path": "/"})
    track(cdp, anon, type="identify", userId=user, traits={"email": " Kim@Example.COM ", "plan": "pro"})
    track(cdp, anon, type="track", event="Order Completed", userId=user, properties={"revenue": 120.5})
    headers = {"Authorization": f"Bearer {cdp.read_token}"}
    wanted = {("anonymous_id", anon), ("user_id", user), ("email", "kim@example.com")}

    def identifiers(body: dict[str, Any]) -> set[tuple[str, str]]:
        return {(i["type"], i["value"]) for i in body["identifiers"]}

    # Events and identities reach ClickHouse through different topics: wait for both, not for the events alone.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = httpx.get(f"{cdp.url}/v1/profiles/email/kim@example.com", headers=headers)
        # (an insert's views fill their tables one after the other: the traits may show a moment after the counts)
        body = r.json() if r.status_code == 200 else {}
        if body and body["computed"]["events"] == 3 and wanted <= identifiers(body) and "plan" in body["traits"]:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    p = r.json()
    assert wanted <= identifiers(p)
    assert p["traits"]["plan"] == "pro"
    assert p["computed"]["orders"] == 1 and p["computed"]["revenue"] == 120.5
    assert len(p["events"]) == 3
    same = httpx.get(f"{cdp.url}/v1/profiles/anonymous_id/{anon}", headers=headers).json()
    assert same["profile_id"] == p["profile_id"]
    assert httpx.get(f"{cdp.url}/v1/profiles/user_id/nobody", headers=headers).status_code == 404


def test_profile_after_a_merge_that_arrives_after_its_events(cdp: CdpProcess) -> None:
    """Two people's events land as two profiles; a later identify links both to one user id. The profile API
    and the analysts' `profiles` view then show the merged profile, equal to a recomputation over all events
    (events_with_profile), with the traits of both sides."""
    a, b, user = (f"{p}-{uuid.uuid4().hex[:8]}" for p in ("a", "b", "u"))
    track(cdp, a, type="page", name="Home", properties={"path": "/"})
    track(cdp, a, type="track", event="Order Completed", properties={"revenue": 10})
    track(cdp, b, type="track", event="Order Completed", properties={"revenue": 20.5})
    track(cdp, b, type="identify", traits={"plan": "free", "city": "Oslo"})
    headers = {"Authorization": f"Bearer {cdp.read_token}"}

    def profile(anon: str) -> dict[str, Any]:
        r = httpx.get(f"{cdp.url}/v1/profiles/anonymous_id/{anon}", headers=headers, timeout=30)
        return r.json() if r.status_code == 200 else {}

    def wait(check: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, (profile(a), profile(b))
            time.sleep(0.2)

    wait(
        lambda: profile(a).get("computed", {}).get("events") == 2 and profile(b).get("computed", {}).get("events") == 2
    )
    assert profile(a)["profile_id"] != profile(b)["profile_id"]
    track(cdp, a, type="identify", userId=user, traits={"plan": "pro"})
    track(cdp, b, type="track", event="Signed In", userId=user)
    wait(lambda: profile(a).get("profile_id") == profile(b).get("profile_id") and profile(a)["computed"]["events"] == 6)
    p = profile(b)
    pid = p["profile_id"]
    assert p["computed"]["orders"] == 2 and p["computed"]["revenue"] == 30.5
    assert p["traits"]["city"] == "Oslo" and p["traits"]["plan"] == "pro"  # the later identify wins
    assert {("anonymous_id", a), ("anonymous_id", b), ("user_id", user)} <= {
        (i["type"], i["value"]) for i in p["identifiers"]
    }
    assert len(p["events"]) == 6
    recomputed = cdp.sql(
        "SELECT count(), countIf(event = 'Order Completed'), sumIf(JSONExtractFloat(properties, 'revenue'), "
        f"event = 'Order Completed') FROM cdp.events_with_profile WHERE profile_id = '{pid}'"
    )[0]
    assert recomputed == [6, 2, 30.5]
    # the analysts' `profiles` shows the same at the profile rollup's next step (CDP_PROFILE_ROLLUP_S)
    by_view = f"SELECT format('{{}}/{{}}/{{}}', events, orders, revenue) FROM cdp.profiles WHERE profile_id = '{pid}'"
    cdp.wait_for(by_view, "6/2/30.5", timeout=10)


def test_consent_gates_membership_and_a_withdrawal_leaves_the_lookup_within_seconds(cdp: CdpProcess) -> None:
    """Acceptance 4 of the privacy issue, profile and anonymous audiences: consent given, denied, missing (the
    default denies advertising), withdrawn (by the person's next event, and by the admin endpoint)."""
    run = uuid.uuid4().hex[:8]
    dmp = create(cdp, {"name": "Offer seen", "scope": "anonymous", "rule": {"event": f"Offer {run}", "type": "track"}})
    ads = create(
        cdp,
        {"name": "Ads", "scope": "profile", "purpose": "advertising", "rule": {"event": f"Ad {run}", "type": "track"}},
    )
    assert dmp.status_code == ads.status_code == 201, (dmp.text, ads.text)
    assert (dmp.json()["purpose"], ads.json()["purpose"]) == ("advertising", "advertising")
    dmp_id, ads_id = dmp.json()["id"], ads.json()["id"]
    yes, no, missing, user, silent = (f"{p}-{run}" for p in ("yes", "no", "missing", "u", "u0"))
    bad = httpx.post(
        f"{cdp.url}/v1/track",
        auth=(cdp.write_keys["online"], ""),
        timeout=30,
        json={"anonymousId": yes, "event": "x", "context": {"consent": {"categoryPreferences": []}}},
    )
    assert bad.status_code == 400 and "context.consent.categoryPreferences" in bad.text
    batch = [
        {"type": "track", "event": f"Offer {run}", "anonymousId": missing},  # no consent object: the default
        {"type": "track", "event": f"Offer {run}", "anonymousId": no, "context": ADS_NO},
        {"type": "track", "event": f"Ad {run}", "userId": silent},
        {"type": "track", "event": f"Ad {run}", "userId": user, "context": ADS_YES},
        {"type": "track", "event": f"Offer {run}", "anonymousId": yes, "context": ADS_YES},
    ]
    r = httpx.post(f"{cdp.url}/v1/batch", json={"batch": batch}, auth=(cdp.write_keys["online"], ""), timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == len(batch), r.text
    wait_lookup(cdp, "anonymous_id", yes, dmp_id, True, timeout=30)  # after the new audiences' full evaluations
    wait_lookup(cdp, "user_id", user, ads_id, True, timeout=30)
    cdp.wait_for(f"SELECT count() FROM cdp.events WHERE event IN ('Offer {run}', 'Ad {run}')", len(batch))
    time.sleep(2.5)  # the evaluator's rounds (every second) have seen every insert
    for who, id_type in ((missing, "anonymous_id"), (no, "anonymous_id"), (silent, "user_id")):
        assert lookup(cdp, id_type, who) == [], who
    stored = cdp.sql(f"SELECT id_value FROM cdp.anonymous_profiles WHERE id_value IN ({in_list([yes, no, missing])})")
    assert stored == [[yes]]  # no DMP profile without advertising consent
    # withdrawals: the cookie's next event, and the admin endpoint for the user (a call-centre opt-out)
    track(cdp, yes, type="page", name="Home", context=ADS_NO)
    withdrawn = {"id_type": "user_id", "value": user, "categories": {"Marketing": False}}
    w = httpx.post(f"{cdp.url}/v1/consent", json=withdrawn, headers=cdp.admin_headers(), timeout=30)
    assert w.status_code == 202, w.text
    left_dmp = wait_lookup(cdp, "anonymous_id", yes, dmp_id, False, timeout=5)
    left_ads = wait_lookup(cdp, "user_id", user, ads_id, False, timeout=5)
    print(f"withdrawals left the lookup after {left_dmp:.2f} s (anonymous) and {left_ads:.2f} s (profile)")
    for audience, member in ((dmp_id, f"anonymous_id:{yes}"), (ads_id, None)):
        statuses = [c["status"] for c in changes(cdp, audience) if member is None or c["member"] == member]
        assert statuses == ["entered", "exited"], (audience, statuses)
    profile = httpx.get(f"{cdp.url}/v1/profiles/user_id/{user}", headers=cdp.admin_headers(), timeout=30).json()
    assert profile["consent"]["advertising"] is False and profile["consent"]["analytics"] is True
