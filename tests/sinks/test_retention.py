"""Retention on the real engine: rows stored under the default retention, then short TTLs set (a changed setting
re-applies migration 017): the engine's TTL merge removes the raw events of never-identified cookies and devices,
old refusals and old audience history, and keeps the events of identified people, of a cookie identified later
(marked before the TTLs apply) and the current memberships."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson

from sinks.clickhouse import ClickHouse
from sinks.migrate import migrate
from sinks.retention import IdentifiedMarker, Retention
from streams.follow import wait_until

SHORT = Retention(anonymous_profiles_days=90, anonymous_events_days=5, refusals_days=3, audience_history_days=4)


def ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def stitched(message_id: str, key: str, days: float, user_id: str = "") -> bytes:
    at = ago(days).isoformat()
    anonymous = key.split(":", 1)[1] if key.startswith("anonymous_id:") else ""
    return orjson.dumps(
        {
            "messageId": message_id,
            "type": "track",
            "event": "E",
            "anonymousId": anonymous,
            "userId": user_id,
            "profileId": f"p-{key}",
            "identityKey": key,
            "timestamp": at,
            "receivedAt": at,
        }
    )


def merge(ch: ClickHouse, table: str) -> None:
    ch.command(f"OPTIMIZE TABLE {ch.database}.{table} FINAL")


def test_short_ttls_remove_expired_rows_at_the_ttl_merge(ch: ClickHouse) -> None:
    db = ch.database
    ch.insert_json_lines(
        "events_landing",
        [
            stitched("old-cookie", "anonymous_id:c1", 10),
            stitched("new-cookie", "anonymous_id:c2", 1),
            stitched("old-user", "user_id:u1", 10, user_id="u1"),
            stitched("old-device", "device_id:d1", 10),
            stitched("later-identified", "anonymous_id:c3", 10),
        ],
    )
    now = datetime.now(UTC)
    ch.insert(  # c3 logs in later: its node joins the profile of an e-mail
        "identities_store",
        [("anonymous_id", "c3", "p-x", now, now, 2), ("email", "x@example.com", "p-x", now, now, 1)],
        ["id_type", "id_value", "profile_id", "first_seen", "updated_at", "version"],
    )
    ch.insert(
        "identity_refusals",
        [("email:a", "user_id:b", "limit", "e1", ago(10)), ("email:a", "user_id:c", "limit", "e2", ago(1))],
        ["node", "peer", "reason", "cause", "refused_at"],
    )
    changes = [
        ("a1", "still-in", "entered", 10),
        ("a1", "still-in", "exited", 9),
        ("a1", "still-in", "entered", 8),
        ("a1", "gone", "entered", 10),
        ("a1", "gone", "exited", 7),
        ("a1", "recent", "entered", 8),
        ("a1", "recent", "exited", 1),
    ]
    ch.insert(
        "audience_members",
        [(a, m, "profile", s, ago(d)) for a, m, s, d in changes],
        ["audience_id", "member", "member_type", "status", "changed_at"],
    )
    current = f"SELECT member FROM {db}.audience_members_current ORDER BY member"
    before = ch.query(current)[1]

    # A changed setting re-applies the TTLs only, after marking c3's earlier events as identified.
    assert migrate(ch, retention=SHORT) == ["018_retention.sql"]
    assert migrate(ch, retention=SHORT) == []
    for table in ("events_store", "identity_refusals", "audience_members"):
        merge(ch, table)
    _, rows = ch.query(f"SELECT message_id FROM {db}.events_store ORDER BY message_id")
    assert [r[0] for r in rows] == ["later-identified", "new-cookie", "old-user"]
    assert ch.query(f"SELECT cause FROM {db}.identity_refusals")[1] == [("e2",)]

    _, rows = ch.query(f"SELECT member, status FROM {db}.audience_members ORDER BY member, changed_at")
    assert rows == [("gone", "exited"), ("recent", "entered"), ("recent", "exited"), ("still-in", "entered")]
    assert ch.query(current)[1] == before == [("still-in",)]


def test_the_marker_part_marks_at_start_and_stops_at_once(ch: ClickHouse) -> None:
    ch.insert_json_lines("events_landing", [stitched("m1", "anonymous_id:c9", 1)])
    now = datetime.now(UTC)
    ch.insert(
        "identities_store",
        [("anonymous_id", "c9", "p9", now, now, 1), ("user_id", "u9", "p9", now, now, 1)],
        ["id_type", "id_value", "profile_id", "first_seen", "updated_at", "version"],
    )
    assert ch.scalar(f"SELECT anonymous FROM {ch.database}.events_store") == 1
    marker = IdentifiedMarker(ch, interval_s=3600)
    marker.start()
    assert wait_until(lambda: marker.runs == 1, 30)
    started = time.monotonic()
    marker.stop()
    assert time.monotonic() - started < 5 and not marker.is_alive()
    assert ch.scalar(f"SELECT anonymous FROM {ch.database}.events_store") == 0
