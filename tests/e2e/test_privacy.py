"""Privacy regulations on the real stack (`cdp run`, the test broker, chDB): a canary person erased by a secondary
e-mail in any spelling is gone from the events, the identities and the profile API within the bound, a control
person is intact, the canary's later events (also from a new cookie logging in as them) are answered 200 and not
stored, counted in the metric, ``unsuppress`` lets them in again, and a replay of the canary's raw records (as
received before the erasure) does not bring them back. `cdp import` leaves a suppressed person's rows out, and
after a restart the regulations are answered as before and the suppression still holds."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bench.stack import produce_all
from identity.rules import IdentityRules
from streams.keys import raw_event_key
from streams.producer import CHECKED_HEADER
from tests.e2e.fixtures import (
    cdp_import,
    in_list,
    latest_by_key,
    mid,
    now_iso,
    read_topic,
    suppressed_events,
    wait_rows,
)
from tests.support.service import CdpProcess

pytestmark = pytest.mark.e2e
FINISHED_WITHIN_S = 60.0


@pytest.fixture(scope="module")
def cdp(kafka, tmp_path_factory):
    service = CdpProcess(kafka.bootstrap, tmp_path_factory.mktemp("privacy") / "data", f"t{uuid.uuid4().hex[:10]}")
    service.start().wait_ready()
    yield service
    assert service.stop() == 0, service.output()[-3000:]


def post(cdp: CdpProcess, channel: str, events: list[dict[str, Any]]) -> None:
    r = httpx.post(f"{cdp.url}/v1/batch", json={"batch": events}, auth=(cdp.write_keys[channel], ""), timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text


def regulation(cdp: CdpProcess, kind: str, id_type: str, value: str) -> dict[str, Any]:
    """Posts a regulation and waits for its end; the state as GET answers it."""
    body = {"type": kind, "subjects": [{"id_type": id_type, "value": value}]}
    r = httpx.post(f"{cdp.url}/v1/regulations", json=body, headers=cdp.admin_headers(), timeout=30)
    assert r.status_code == 202, r.text
    started = time.monotonic()
    while time.monotonic() - started < FINISHED_WITHIN_S:
        state: dict[str, Any] = httpx.get(
            f"{cdp.url}/v1/regulations/{r.json()['id']}", headers=cdp.admin_headers(), timeout=30
        ).json()
        if state["status"] not in ("pending", "running"):
            return state
        time.sleep(0.2)
    raise AssertionError(f"not finished within {FINISHED_WITHIN_S} s: {state}")


def profile_status(cdp: CdpProcess, id_type: str, value: str) -> int:
    return httpx.get(f"{cdp.url}/v1/profiles/{id_type}/{value}", headers=cdp.admin_headers(), timeout=30).status_code


def test_erase_and_suppress_a_canary_then_unsuppress(cdp: CdpProcess) -> None:
    run = uuid.uuid4().hex[:8]
    cookie, user, email, secondary = f"can{run}-c", f"can{run}-u", f"can{run}@example.com", f"can{run}-2@example.com"
    control_cookie, control_email = f"ctl{run}-c", f"ctl{run}@example.com"
    canary = [
        {"type": "identify", "anonymousId": cookie, "userId": user, "traits": {"email": email}, "messageId": mid()},
        {"type": "track", "event": "Viewed", "anonymousId": cookie, "messageId": mid()},
        {"type": "identify", "userId": user, "traits": {"email": secondary}, "messageId": mid()},
    ]
    control = [
        {"type": "identify", "anonymousId": control_cookie, "traits": {"email": control_email}, "messageId": mid()}
    ]
    post(cdp, "online", canary[:2] + control)
    post(cdp, "mobile", canary[2:])
    ids = [e["messageId"] for e in canary + control]
    wait_rows(cdp, ids)
    cdp.wait_for(f"SELECT count() FROM cdp.identities WHERE id_value = '{secondary}'", 1, timeout=60)
    assert profile_status(cdp, "email", email) == 200

    state = regulation(cdp, "suppress_with_delete", "email", f"  {secondary.upper()} ")

    assert state["status"] == "finished", f"{state.get('error')}: {state['stages']}, residual {state.get('residual')}"
    assert set(state["residual"].values()) == {0} and state["counts"]["events_store"] == 3, state
    assert run not in str(state)  # the audit trail names the subject by keyed hash only
    assert cdp.scalar(f"SELECT count() FROM cdp.events WHERE message_id IN ({in_list(ids)})") == 1
    assert cdp.scalar(f"SELECT count() FROM cdp.identities WHERE id_value LIKE 'can{run}%'") == 0
    assert profile_status(cdp, "email", email) == 404 and profile_status(cdp, "user_id", user) == 404
    assert profile_status(cdp, "email", control_email) == 200
    identities = latest_by_key(cdp.bootstrap, f"{cdp.topic_prefix}.identities")
    canary_keys = [k for k in identities if f"can{run}".encode() in k]
    assert len(canary_keys) == 4 and all(identities[k] is None for k in canary_keys)
    assert identities[f"email:{control_email}".encode()] is not None
    # the stitch workers' node states: the latest changelog record of every canary node is a tombstone
    assert state["stages"]["identity"]["status"] == "finished" and state["counts"]["identity"] == 4, state
    nodes = latest_by_key(cdp.bootstrap, f"{cdp.topic_prefix}-stitch-identity-nodes-changelog")
    canary_nodes = [k for k in nodes if f"can{run}".encode() in k]
    assert len(canary_nodes) == 4 and all(nodes[k] is None for k in canary_nodes), canary_nodes
    assert nodes[orjson.dumps(f"email:{control_email}")] is not None

    counted = suppressed_events(cdp)
    later = [
        {"type": "track", "event": "Again", "anonymousId": cookie, "messageId": mid()},
        {"type": "identify", "anonymousId": f"can{run}-new", "userId": user, "messageId": mid()},
    ]
    post(cdp, "online", later)
    post(cdp, "online", [{"type": "track", "event": "After", "anonymousId": f"can{run}-new", "messageId": mid()}])
    barrier = {"type": "track", "event": "Barrier", "anonymousId": control_cookie, "messageId": mid()}
    post(cdp, "online", [barrier])
    wait_rows(cdp, [barrier["messageId"]])
    assert cdp.scalar(f"SELECT count() FROM cdp.events WHERE anonymous_id LIKE 'can{run}%'") == 0
    assert suppressed_events(cdp) - counted == 3

    assert regulation(cdp, "unsuppress", "anonymous_id", f"can{run}-new")["status"] == "finished"
    back = {"type": "track", "event": "Back", "anonymousId": cookie, "messageId": mid()}
    post(cdp, "online", [back])
    wait_rows(cdp, [back["messageId"]])

    # A replay: the canary's records as the collector wrote them, each followed on its partition by a copy received
    # now (the person returning), which is kept and shows when the replayed one before it has been handled.
    rules, replay, returning = IdentityRules.load(None), [], []
    for channel, sent in (("online", 2), ("mobile", 1)):
        topic = f"{cdp.topic_prefix}.events.{channel}"
        for event in read_topic(
            cdp.bootstrap, topic, lambda got, n=sent: sum(e["messageId"] in ids[:3] for e in got) >= n
        ):
            if event["messageId"] in ids[:3]:
                again = {**event, "messageId": mid(), "receivedAt": now_iso()}
                replay.append((topic, raw_event_key(event, rules), orjson.dumps(event)))
                returning.append((topic, raw_event_key(again, rules), orjson.dumps(again)))
    assert len(replay) == 3
    produce_all(cdp.bootstrap, replay + returning, headers=[CHECKED_HEADER])
    wait_rows(cdp, [orjson.loads(v)["messageId"] for _, _, v in returning])
    assert cdp.scalar(f"SELECT count() FROM cdp.events WHERE message_id IN ({in_list(ids[:3])})") == 0


def test_an_import_leaves_out_a_suppressed_person(cdp: CdpProcess, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    user = f"imp{run}-u"
    assert regulation(cdp, "suppress", "user_id", user)["status"] == "finished"
    kept = mid()
    rows = [
        {"type": "identify", "userId": user, "traits": {"email": f"imp{run}@example.com"}, "messageId": mid()},
        {"type": "track", "event": "Bought", "userId": f"ok{run}", "messageId": kept},
    ]
    path = tmp_path / "crm.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    key = (cdp.data_dir / "privacy_key").read_text().strip()  # the deployment's, as an operator would set it
    proc = cdp_import(cdp, path, cdp.write_keys["offline"], env={"CDP_PRIVACY_KEY": key})
    assert proc.returncode == 0, proc.stderr
    assert "imported 1 events" in proc.stdout and "1 of suppressed people left out" in proc.stdout, proc.stdout
    wait_rows(cdp, [kept])
    assert cdp.scalar(f"SELECT count() FROM cdp.events WHERE user_id = '{user}' OR traits LIKE '%imp{run}%'") == 0


def test_regulations_and_suppression_survive_a_restart(cdp: CdpProcess) -> None:
    """Last in the module: `cdp run` stops and starts again on the same data folder and topics."""
    run = uuid.uuid4().hex[:8]
    state = regulation(cdp, "suppress", "anonymous_id", f"rst{run}")
    assert state["status"] == "finished"
    assert cdp.stop() == 0, cdp.output()[-3000:]
    cdp.relaunch().wait_ready()
    got = httpx.get(f"{cdp.url}/v1/regulations/{state['id']}", headers=cdp.admin_headers(), timeout=30)
    assert got.status_code == 200 and got.json() == state
    listed = httpx.get(f"{cdp.url}/v1/regulations", headers=cdp.admin_headers(), timeout=30).json()["regulations"]
    assert state["id"] in [r["id"] for r in listed]
    post(cdp, "online", [{"type": "track", "event": "Back", "anonymousId": f"rst{run}", "messageId": mid()}])
    assert suppressed_events(cdp) == 1  # the new process's counter: the ledger was read again
