"""The SDK-like client the chaos suite and the soak stage count on: what it retries, what it counts as accepted,
the stall it reports, and the journeys it sends. A fake HTTP transport answers; no server, no network."""

from __future__ import annotations

import functools
import time
from collections import Counter

import httpx
import orjson
import pytest

from bench.sdk import ACTIVE_PEOPLE, EVENTS_PER_PERSON, IDENTIFY_AT, LoadReport, SdkLoad, journey_event, journey_people


def test_journeys_give_every_event_a_cookie_and_link_it_to_the_user_id() -> None:
    for count in (1, 199, 2_000, 3_000, 4_321):
        events = [journey_event("t", i) for i in range(count)]
        assert len({e["messageId"] for e in events}) == count
        assert journey_people(count) == len({e["anonymousId"] for e in events})
    by_person: dict[str, list[dict]] = {}
    for i in range(4_000):
        event = journey_event("t", i)
        by_person.setdefault(event["anonymousId"], []).append(event)
    for steps in by_person.values():
        assert len(steps) == EVENTS_PER_PERSON
        assert steps[IDENTIFY_AT]["type"] == "identify" and steps[IDENTIFY_AT]["traits"]["email"]
        # the user id appears only once the identify has linked it to the cookie
        assert all("userId" not in e for e in steps[:IDENTIFY_AT])
        assert {e["userId"] for e in steps[IDENTIFY_AT:]} == {steps[IDENTIFY_AT]["userId"]}


def _load(handler, count: int = 40, senders: int = 2, **kwargs) -> SdkLoad:
    transport = httpx.MockTransport(handler)
    events = functools.partial(journey_event, "t")
    return SdkLoad("http://cdp", "wk", count, events, 10_000, 10, senders, transport=transport, **kwargs)


def test_a_failed_batch_is_sent_again_with_the_same_bytes_until_accepted() -> None:
    bodies: Counter[bytes] = Counter()
    answers = iter([503, 500, 200] + [200] * 100)

    def handler(request: httpx.Request) -> httpx.Response:
        bodies[request.content] += 1
        status = next(answers)
        if status == 500:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status, json={"success": status == 200, "error": "event log unavailable"})

    report = _load(handler, senders=1).start().wait(30)
    assert report.accepted == {f"t-{i}" for i in range(40)} and report.accepted_count == 40
    assert sorted(bodies.values(), reverse=True)[0] == 3  # one batch: 503, connection error, then 200
    assert len(bodies) == 4  # 4 distinct batches, the retried one resent byte for byte
    assert report.answers == Counter({"200": 4, "503": 1, "ConnectError": 1})
    assert [status for _, status in report.failed_answers] == ["503", "ConnectError"]
    assert report.failure_reasons == Counter({"503: event log unavailable": 1, "ConnectError": 1})
    assert report.sent == 40 and not report.refused and report.gave_up == 0


def test_a_4xx_is_refused_and_never_retried() -> None:
    calls = Counter[str]()

    def handler(request: httpx.Request) -> httpx.Response:
        first = orjson.loads(request.content)["batch"][0]["messageId"]
        calls[first] += 1
        return httpx.Response(400 if first == "t-0" else 200, json={"success": first != "t-0"})

    report = _load(handler, count=20).start().wait(30)
    assert calls["t-0"] == 1
    assert report.accepted == {f"t-{i}" for i in range(10, 20)}
    assert len(report.refused) == 1 and report.refused[0].startswith("400")


def test_events_rejected_inside_a_200_answer_are_reported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"success": True, "rejected": [{"index": 0, "error": "bad"}]})

    report = _load(handler, count=10).start().wait(30)
    assert report.refused and "rejected in a 200 answer" in report.refused[0]


def test_the_longest_stall_is_the_longest_time_without_a_200() -> None:
    state = {"down_until": 0.0, "calls": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        state["calls"] += 1
        if state["calls"] == 3:
            state["down_until"] = time.monotonic() + 1.0  # the server goes away for a second
        if time.monotonic() < state["down_until"]:
            return httpx.Response(503)
        return httpx.Response(200, json={"success": True})

    report = _load(handler, count=60, keep_ids=False).start().wait(30)
    assert report.accepted_count == 60 and not report.accepted  # counted, ids not kept
    assert 0.9 <= report.longest_stall_s < 3.0
    assert report.answers["503"] >= 2


def test_the_stall_after_a_fault_is_measured_from_the_fault() -> None:
    report = LoadReport(ok_at=[0.5, 1.0, 1.5, 2.0, 6.5, 7.0, 20.0])
    assert report.stall_after(2.2, within=3.0) == pytest.approx(4.3)  # from the fault to the next 200
    assert report.stall_after(0.0, within=3.0) == pytest.approx(4.5)  # the gap from 2.0 began in the window
    assert report.stall_after(6.6, within=3.0) == pytest.approx(13.0)  # the gap from the 200 at 7.0 s
    assert report.stall_after(25.0, within=3.0) == 0.0  # nothing answered after it


def test_a_bounded_population_returns_with_the_same_identifiers() -> None:
    people = 2 * ACTIVE_PEOPLE
    first = [journey_event("t", i, people) for i in range(people * EVENTS_PER_PERSON)]
    again = [journey_event("t", i, people) for i in range(people * EVENTS_PER_PERSON, 2 * people * EVENTS_PER_PERSON)]
    assert len({e["anonymousId"] for e in first}) == people
    assert {e["anonymousId"] for e in again} == {e["anonymousId"] for e in first}
    assert {e.get("userId") for e in again} == {e.get("userId") for e in first}
    assert len({e["messageId"] for e in first + again}) == len(first) + len(again)
