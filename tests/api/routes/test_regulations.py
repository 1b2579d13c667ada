"""POST/GET /v1/regulations over a recording producer and the real engine, and suppression at the collector: a
suppressed person's events are answered 200 and dropped (counted), a new cookie arriving with them joins the
suppression, and ``unsuppress`` lets both in again."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.deps import Services
from schemas.regulation import RegulationType, new_state
from sinks.clickhouse import ClickHouse
from sinks.regulations import RegulationProcessor, ledger_entries
from streams.privacy import ledger_record
from tests.api.routes.fixtures import ADMIN, READ, WRITE_KEY, client, error_of, sent, services


def subjects(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"id_type": t, "value": v} for t, v in pairs]


def test_only_the_admin_token_may_ask() -> None:
    c = client(services())
    body = {"type": "delete", "subjects": subjects(("email", "a@b.c"))}
    assert c.post("/v1/regulations", json=body).status_code == 401
    assert c.post("/v1/regulations", json=body, headers=READ).status_code == 403
    assert c.get("/v1/regulations/reg_x", headers=READ).status_code == 403


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"type": "forget", "subjects": subjects(("email", "a@b.c"))}, "type"),
        ({"type": "delete", "subjects": []}, "subjects"),
        ({"type": "delete"}, "subjects"),
        ({"type": "delete", "subjects": [{"id_type": "email"}]}, "subjects[0].value"),
        (
            {"type": "delete", "subjects": subjects(("email", "a@b.c"), ("shoe_size", "secret-44"))},
            "subjects[1].id_type",
        ),
    ],
)
def test_a_bad_request_is_a_422_naming_the_field_and_never_the_value(body: dict[str, Any], loc: str) -> None:
    s = services(ch=cast(ClickHouse, object()))  # refused before any store is asked
    r = client(s).post("/v1/regulations", json=body, headers=ADMIN)
    assert [e["loc"] for e in error_of(r, 422)["errors"]] == [loc]
    assert "secret-44" not in r.text and sent(s) == []


@pytest.fixture
def running(ch: ClickHouse) -> Iterator[tuple[Services, TestClient]]:
    s = services(ch=ch)
    processor = cast(RegulationProcessor, s.regulations)
    processor.start()
    try:
        yield s, client(s)
    finally:
        processor.stop()


def finished(c: TestClient, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    r = c.post("/v1/regulations", json=body, headers=ADMIN)
    assert r.status_code == 202, r.text
    regulation_id = r.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state: dict[str, Any] = c.get(f"/v1/regulations/{regulation_id}", headers=ADMIN).json()
        if state["status"] not in ("pending", "running"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"regulation {regulation_id} did not finish: {state}")


def seed_identity(ch: ClickHouse, pairs: list[tuple[str, str, str]]) -> None:
    now = datetime.now(UTC)
    rows = [(t, v, p, now, now, 1) for t, v, p in pairs]
    ch.insert("identities_store", rows, ["id_type", "id_value", "profile_id", "first_seen", "updated_at", "version"])


def test_a_dry_run_counts_and_a_delete_erases_the_cluster(running: tuple[Services, TestClient], ch: ClickHouse) -> None:
    s, c = running
    run = uuid.uuid4().hex[:8]
    seed_identity(ch, [("email", f"ann{run}@example.com", f"p{run}"), ("anonymous_id", f"c{run}", f"p{run}")])
    spelled = f"  Ann{run}@Example.COM "  # normalised as the stitcher keys it

    dry = c.post(
        "/v1/regulations",
        json={"type": "delete", "subjects": subjects(("email", spelled)), "dry_run": True},
        headers=ADMIN,
    )
    assert dry.status_code == 200, dry.text
    assert (dry.json()["identifiers"], dry.json()["counts"]["identities_store"]) == (2, 2)
    assert ch.scalar(f"SELECT count() FROM {ch.database}.identities_store") == 2

    state = finished(c, {"type": "delete", "subjects": subjects(("email", spelled))})
    assert state["status"] == "finished", state
    assert state["counts"]["identities_store"] == 2 and state["residual"]["identities_store"] == 0
    assert state["counts"]["ledger"] == 3  # two identifiers and the profile id
    assert s.ledger is not None and state["subjects"] == [s.ledger.hasher(f"email:ann{run}@example.com")]
    assert run not in str(state)
    assert ch.scalar(f"SELECT count() FROM {ch.database}.identities_store") == 0
    assert error_of(c.get("/v1/regulations/reg_none", headers=ADMIN), 404)


def test_the_audit_trail_lists_who_asked_and_every_stage_and_holds_no_subject_value(
    running: tuple[Services, TestClient], ch: ClickHouse
) -> None:
    s, c = running
    run = uuid.uuid4().hex[:8]
    seed_identity(ch, [("email", f"eve{run}@example.com", f"p{run}"), ("user_id", f"u{run}", f"p{run}")])
    state = finished(c, {"type": "delete", "subjects": subjects(("email", f"Eve{run}@example.com"))})

    listed = c.get("/v1/regulations", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    trail = listed.json()["regulations"]
    assert trail[0] == state and state["type"] == "delete"
    assert state["requested_by"] == "admin" and len(state["token_id"]) == 16
    assert all(stage["finished_at_ms"] >= stage["started_at_ms"] > 0 for stage in state["stages"].values())
    assert state["counts"]["identities_store"] == 2 and set(state["residual"].values()) == {0}
    records = [v or b"" for t, _, v in sent(s) if t == s.topics.regulations]
    for text in (listed.content, *records):  # the answer and every state the regulations' topic ever held
        assert run.encode() not in text and b"adm1n" not in text
    assert c.get("/v1/regulations", headers=READ).status_code == 403


def suppressed_count() -> float:
    return REGISTRY.get_sample_value("cdp_events_suppressed_total", {"channel": "online"}) or 0.0


def raw_events(s: Services) -> list[tuple[str, bytes | None, bytes | None]]:
    return [r for r in sent(s) if r[0] == s.topics.raw("online")]


def test_suppression_drops_the_person_and_a_cookie_logging_in_as_them_until_unsuppressed(
    running: tuple[Services, TestClient], ch: ClickHouse
) -> None:
    s, c = running
    run = uuid.uuid4().hex[:8]
    user, cookie, new_cookie = f"u{run}", f"c{run}", f"new{run}"
    seed_identity(ch, [("user_id", user, f"p{run}"), ("anonymous_id", cookie, f"p{run}")])
    assert finished(c, {"type": "suppress", "subjects": subjects(("user_id", user))})["status"] == "finished"

    before = suppressed_count()
    for body in (
        {"event": "Seen", "anonymousId": cookie},  # the cluster's other identifier
        {"event": "Login", "userId": user, "anonymousId": new_cookie},  # a new cookie logging in as them
        {"event": "Later", "anonymousId": new_cookie},  # that cookie alone, afterwards
    ):
        r = c.post("/v1/track", json=body, auth=(WRITE_KEY, ""))
        assert r.status_code == 200 and r.json() == {"success": True}
    batch = {
        "batch": [
            {"type": "track", "event": "B", "anonymousId": new_cookie},
            {"type": "track", "event": "Ok", "anonymousId": f"other{run}"},
        ]
    }
    assert c.post("/v1/batch", json=batch, auth=(WRITE_KEY, "")).json()["accepted"] == 2
    assert [k for _, k, _ in raw_events(s)] == [f"anonymous_id:other{run}".encode()]
    assert suppressed_count() - before == 4

    assert finished(c, {"type": "unsuppress", "subjects": subjects(("anonymous_id", cookie))})["status"] == "finished"
    for anon in (cookie, new_cookie):
        assert c.post("/v1/track", json={"event": "Back", "anonymousId": anon}, auth=(WRITE_KEY, "")).status_code == 200
    assert [k for _, k, _ in raw_events(s)][1:] == [
        f"anonymous_id:{cookie}".encode(),
        f"anonymous_id:{new_cookie}".encode(),
    ]
    assert suppressed_count() - before == 4


def test_a_second_suppression_keeps_the_group_so_one_unsuppress_lifts_everything() -> None:
    """Pure over a ledger fed by hand: an identifier that joined the first suppression at the collector is lifted
    by an unsuppress of the person after a second suppression."""
    s = services()
    ledger = s.ledger
    assert ledger is not None
    person, joined = ledger.hasher("user_id:u"), ledger.hasher("anonymous_id:new")
    for regulation_id in ("reg_1", "reg_2"):
        for h, e in ledger_entries(RegulationType.SUPPRESS, regulation_id, [person], ledger, 1):
            ledger.apply(h, ledger_record(ledger.topic, h, e)[2])
        if regulation_id == "reg_1":
            for record in ledger.screen(["user_id:u", "anonymous_id:new"]) or []:
                assert record[1] == joined.encode()
    entry = ledger.get(person)
    assert entry is not None and entry.group == "reg_1"
    lifted = ledger_entries(RegulationType.UNSUPPRESS, "reg_3", [person], ledger, 2)
    assert {h for h, e in lifted if not e.suppressed} == {person, joined}


def test_a_restarted_processor_marks_what_a_crashed_process_on_its_host_left_unfinished(ch: ClickHouse) -> None:
    """Regulations left pending or running by a process that is gone (a pid no longer running, or this pid with an
    earlier start) are marked interrupted at start; one of a live process, or of another host, is left alone."""
    s = services(ch=ch)
    processor = cast(RegulationProcessor, s.regulations)
    host, pid, _ = processor.name.rsplit(":", 2)
    gone = subprocess.Popen(["true"])
    gone.wait()
    owners = {
        "reg_dead": f"{host}:{gone.pid}:1",
        "reg_earlier_me": f"{host}:{pid}:1",
        "reg_alive": f"{host}:{os.getppid()}:1",
        "reg_elsewhere": f"other-host:{gone.pid}:1",
    }
    log = processor.regulations
    for regulation_id, owner in owners.items():
        state = new_state(regulation_id, RegulationType.DELETE, [], "admin", 1, owner=owner)
        state["status"], state["stages"]["cluster"]["status"] = "running", "running"
        log.apply(regulation_id, orjson.dumps(state))
    processor.start()
    processor.stop()
    status = {r: (log.get(r) or {})["status"] for r in owners}
    assert status == {
        "reg_dead": "interrupted",
        "reg_earlier_me": "interrupted",
        "reg_alive": "running",
        "reg_elsewhere": "running",
    }
    assert (log.get("reg_dead") or {})["stages"]["cluster"]["status"] == "interrupted"


def test_rows_a_writer_stores_after_the_erasure_are_erased_again_before_the_residual(ch: ClickHouse) -> None:
    """A writer that had read the person's rows before the erasure (a rollup step, a sink batch under way) may
    store them after it: they are erased again and counted as late, and the regulation finishes with residual 0.
    Without those rounds the same late row fails the regulation."""
    run = uuid.uuid4().hex[:8]
    s = services(ch=ch)
    processor = cast(RegulationProcessor, s.regulations)
    processor.settle_s = 0.01

    def erase_and_write_late(producer: Any, node_keys: Any, cause: str) -> int:
        seed_identity(ch, [("email", f"late{run}@example.com", f"p{run}")])  # after the clickhouse stage
        return len(node_keys)

    processor.nodes.erase = erase_and_write_late  # type: ignore[method-assign]
    processor.start()
    try:
        c = client(s)
        for person, rounds, status in (("u", 3, "finished"), ("v", 0, "failed")):
            processor.residual_rounds = rounds
            person_ids = [("email", f"late{run}@example.com", f"p{run}"), ("user_id", f"{person}{run}", f"p{run}")]
            seed_identity(ch, person_ids)
            state = finished(c, {"type": "delete", "subjects": subjects(("user_id", f"{person}{run}"))})
            assert state["status"] == status, state
            if rounds:
                assert state["counts"]["late_rows"]["identities_store"] == 1, state  # (and what its views derived)
                assert set(state["residual"].values()) == {0}, state
                rows = f"SELECT count() FROM {ch.database}.identities_store WHERE id_value LIKE '%{run}%'"
                assert ch.scalar(rows) == 0
            else:
                assert state["stages"]["residual"]["status"] == "failed", state
    finally:
        processor.stop()
