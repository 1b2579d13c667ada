"""Erasure in the real engine: a canary person spread over every table, erased by a secondary e-mail, with a
control person beside them that shares a device; afterwards no String column of any table of the database holds
a canary string, no mutation's text does, the work table is gone, and the control person is intact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest

from schemas.regulation import RegulationType, new_state
from sinks.clickhouse import ClickHouse
from sinks.erasure import WORK_PREFIX, person_tables, plan_erasure, predicate_for
from sinks.regulations import Job, RegulationProcessor, dry_run
from tests.api.routes.fixtures import RecordingEraser, RecordingProducer, services
from tests.sinks.fixtures import consented


class People:
    """The canary's strings all contain ``canary``, the control person's ``control`` (but for the device they
    share); all carry the run id."""

    def __init__(self) -> None:
        run = uuid.uuid4().hex[:8]
        self.canary = f"canary{run}"
        self.control = f"control{run}"
        c, k = self.canary, self.control
        self.email, self.secondary = f"{c}-a@example.com", f"{c}-b@example.com"
        self.cookie_old, self.cookie_new, self.user = f"{c}-cookie1", f"{c}-cookie2", f"{c}-user"
        self.profile_old, self.profile_new = f"{c}-profile-old", f"{c}-profile-new"
        self.control_email, self.control_cookie, self.control_profile = f"{k}@example.com", f"{k}-cookie", f"{k}-p"
        self.shared_device = f"shared{run}"  # the control person's node; the canary's link to it was refused

    def cluster(self) -> list[tuple[str, str]]:
        """The canary's identifiers (what the identities topic names them by)."""
        ids = [("email", self.email), ("email", self.secondary), ("user_id", self.user)]
        return [*ids, ("anonymous_id", self.cookie_old), ("anonymous_id", self.cookie_new)]


def seed(ch: ClickHouse, p: People) -> None:
    now = datetime.now(UTC)
    cols = ["id_type", "id_value", "profile_id", "first_seen", "updated_at", "version"]
    ch.insert(
        "identities_store",
        [
            ("anonymous_id", p.cookie_old, p.profile_old, now, now, 1),
            ("anonymous_id", p.cookie_new, p.profile_old, now, now, 1),
            ("email", p.control_email, p.control_profile, now, now, 1),
            ("anonymous_id", p.control_cookie, p.control_profile, now, now, 1),
            ("device_id", p.shared_device, p.control_profile, now, now, 1),
        ],
        cols,
    )
    # The merge moved the canary's label; the old versions stay in the store until a background merge.
    ch.insert(
        "identities_store",
        [
            ("anonymous_id", p.cookie_old, p.profile_new, now, now, 2),
            ("email", p.email, p.profile_new, now, now, 2),
            ("email", p.secondary, p.profile_new, now, now, 2),
            ("user_id", p.user, p.profile_new, now, now, 2),
        ],
        cols,
    )
    ch.insert(
        "merges_store",
        [(p.profile_old, p.profile_new, "m1", now, now)],
        ["from_profile", "into_profile", "cause", "merged_at", "event_time"],
    )
    ch.insert(
        "identity_refusals",
        [
            (f"anonymous_id:{p.cookie_new}", f"device_id:{p.shared_device}", "limit", "m2", now),
            (f"anonymous_id:{p.control_cookie}", "user_id:someone-else", "limit", "m3", now),
        ],
        ["node", "peer", "reason", "cause", "refused_at"],
    )
    ts = now.isoformat()
    device = {"device": {"id": p.shared_device}}

    def event(anon: str, profile: str, **extra: Any) -> bytes:
        body = {"messageId": uuid.uuid4().hex, "type": "track", "event": "Seen", "anonymousId": anon}
        body |= {"profileId": profile, "identityKey": f"anonymous_id:{anon}", "timestamp": ts, "receivedAt": ts}
        extra["context"] = consented(extra.get("context"))  # the DMP side keeps consenting cookies only
        return orjson.dumps({**body, "channel": "online", **extra})

    ch.insert_json_lines(
        "events_landing",
        [
            event(p.cookie_old, p.profile_old, context=device),
            event(p.cookie_new, p.profile_old, context=device),
            event(p.cookie_old, p.profile_new, type="identify", userId=p.user, traits={"email": p.email}),
            event(p.control_cookie, p.control_profile, context=device),
            event(p.control_cookie, p.control_profile, type="identify", traits={"email": p.control_email}),
        ],
    )
    ch.insert(
        "audience_members",
        [
            ("aud_1", p.profile_new, "profile", "entered", now),
            ("aud_2", f"anonymous_id:{p.cookie_old}", "anonymous", "entered", now),
            ("aud_1", p.control_profile, "profile", "entered", now),
        ],
        ["audience_id", "member", "member_type", "status", "changed_at"],
    )


def holding(ch: ClickHouse, marker: str) -> dict[str, int]:
    """Rows of every table of the database (views included) with a String column containing ``marker``, read
    also where a lightweight delete only masked them."""
    _, cols = ch.query(
        "SELECT table, groupArray(name) FROM system.columns WHERE database = {db:String} "
        "AND type LIKE '%String%' AND type NOT LIKE 'AggregateFunction%' GROUP BY table",
        {"db": ch.database},
    )
    found = {}
    for table, names in cols:
        where = " OR ".join(f"position(toString({n}), {{m:String}}) > 0" for n in names)
        n = ch.scalar(f"SELECT count() FROM {ch.database}.{table} WHERE {where}", {"m": marker})
        if n:
            found[table] = n
    return found


def test_the_predicates_follow_the_columns_a_table_has() -> None:
    w = "db.work"
    assert predicate_for(["audience_id", "name", "rule"], w) is None
    events = predicate_for(["message_id", "profile_id", "identity_key", "anonymous_id", "user_id", "context"], w)
    assert events is not None and events.count(" OR ") == 3 and "id_type = 'anonymous_id'" in events
    assert predicate_for(["id_type", "id_value", "last_seen"], w) == (
        "(id_type, id_value) IN (SELECT id_type, id_value FROM db.work)"
    )
    assert "member IN" in (predicate_for(["audience_id", "member"], w) or "")
    plan = plan_erasure("db", {"audiences": ["rule"], "merges": ["from_profile"], f"{WORK_PREFIX}x": ["id_type"]}, w)
    assert list(plan.predicates) == ["merges"]


@pytest.fixture
def people(ch: ClickHouse) -> People:
    p = People()
    seed(ch, p)
    return p


def test_a_dry_run_counts_the_whole_cluster_and_changes_nothing(ch: ClickHouse, people: People) -> None:
    before = holding(ch, people.canary)
    reached = dry_run(ch, [("email", people.secondary)])
    assert reached["identifiers"] == 5 and reached["profiles"] == 2
    counts = reached["counts"]
    assert counts["events_store"] == 3 and counts["merges_store"] == 1 and counts["identity_refusals"] == 1
    assert counts["audience_members"] == 2 and counts["anonymous_profiles_store"] == 2
    assert counts["identities_store"] == 6  # every version, not only the current one
    assert holding(ch, people.canary) == before
    assert not any(t.startswith(WORK_PREFIX) for t in person_tables(ch))


def test_an_erasure_leaves_no_canary_string_and_the_control_person_intact(ch: ClickHouse, people: People) -> None:
    assert set(holding(ch, people.canary)) >= {"events_store", "identities_store", "anonymous_profiles_store"}
    control_before = holding(ch, people.control)
    s = services(ch=ch)
    processor = cast(RegulationProcessor, s.regulations)
    state = new_state("reg_t1", RegulationType.DELETE, ["h"], "admin", 1)
    processor.producer.send_sync([processor.regulations.record(state)])

    final = processor.process(Job("reg_t1", RegulationType.DELETE, [("email", people.secondary)]))

    assert final["status"] == "finished", final
    assert {s["status"] for s in final["stages"].values()} == {"finished"}
    assert set(final["residual"].values()) == {0} and final["counts"]["events_store"] == 3
    assert final["cluster"] == {"identifiers": 5, "profiles": 2}
    assert holding(ch, people.canary) == {}
    # the shared device's anonymous profile is the control person's and keeps the canary's visit: counted, not named
    assert holding(ch, people.control) == control_before
    _, mutations = ch.query("SELECT command FROM system.mutations WHERE database = {db:String}", {"db": ch.database})
    assert mutations and not [m for (m,) in mutations if people.canary in m]
    assert not any(t.startswith(WORK_PREFIX) for t in person_tables(ch))
    # the ledger names all seven of the cluster's nodes, by hash only, and the published states name nobody
    sent = cast(RecordingProducer, s.producer).sent
    ledger = [(k, v) for t, k, v in sent if t == s.topics.privacy_ledger]
    assert len(ledger) == 7 and all(v is not None and orjson.loads(v)["erased_at_ms"] for _, v in ledger)
    private = (s.topics.privacy_ledger, s.topics.regulations)
    assert not [r for r in sent if r[0] in private and people.canary in repr(r)]
    # tombstones for every identifier in the identities topic and every membership in the audience changes
    tombstones = {(t, k) for t, k, v in sent if v is None and t not in private}
    identities = {(s.topics.identities, f"{t}:{v}".encode()) for t, v in people.cluster()}
    changes = {
        (s.topics.audience_changes, k.encode())
        for k in (f"aud_1|{people.profile_new}", f"aud_2|anonymous_id:{people.cookie_old}")
    }
    assert tombstones == identities | changes
    assert s.ledger is not None and s.ledger.get(s.ledger.hasher(f"email:{people.email}")) is not None
    # the stitch workers are asked to erase the identity-graph node of every identifier of the cluster
    assert sorted(cast(RecordingEraser, processor.nodes).erased) == sorted(f"{t}:{v}" for t, v in people.cluster())
    assert final["counts"]["identity"] == len(people.cluster())


def test_every_table_an_erasure_reaches_bounds_the_life_of_replaced_parts(ch: ClickHouse) -> None:
    """Migration 016: the parts an erasure's mutation replaced leave the disk within a bound; a table added later
    that holds people must carry the setting too."""
    plan = plan_erasure(ch.database, person_tables(ch), "w")
    _, rows = ch.query("SELECT name, engine_full FROM system.tables WHERE database = {db:String}", {"db": ch.database})
    engines = dict(rows)
    assert set(plan.predicates) >= {"events_store", "identities_store", "audience_members"}
    assert [t for t in plan.predicates if "old_parts_lifetime = 30" not in engines[t]] == []
