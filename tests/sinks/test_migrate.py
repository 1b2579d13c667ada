import re
import uuid
from datetime import UTC, datetime

import pytest

from sinks.clickhouse import ClickHouse
from sinks.migrate import apply_views, migrate, migration_files, parse_view, statements, view_definitions
from sinks.rows import EVENT_COLUMNS, event_row


def test_migrations_are_versioned_and_idempotent(ch) -> None:
    assert migrate(ch) == []  # the fixture applied everything already
    versions = [v for v, _, _ in migration_files()]
    assert versions == sorted(set(versions))
    _, rows = ch.query(f"SELECT version FROM {ch.database}.schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == versions


def _schema(ch) -> list[tuple[str, str]]:
    _, rows = ch.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = {db:String} ORDER BY name",
        {"db": ch.database},
    )
    return [(r[0], r[1]) for r in rows]


def test_every_file_is_rerunnable_and_ends_in_the_same_schema(ch, chdb_url) -> None:
    # A file interrupted half-way is applied again whole at the next start: each file, run twice in a row on the
    # schema of the files before it, must succeed (IF NOT EXISTS, or a drop before a rebuild) and end in the
    # schema one run gives. (An early file is not rerun on the final schema: a later file may change a table it
    # made, as 013 did the anonymous-profile counts' types, and migrate never applies a file twice that way.)
    fresh = ClickHouse(chdb_url, database=f"t_{uuid.uuid4().hex[:12]}")
    fresh.command(f"CREATE DATABASE {fresh.database}")
    try:
        for _, _, sql in migration_files():
            for _ in range(2):
                for stmt in statements(sql, db=fresh.database):
                    fresh.command(stmt)
        assert apply_views(fresh) and apply_views(fresh) == []
        twice = [(name, query.replace(fresh.database, ch.database)) for name, query in _schema(fresh)]
    finally:
        fresh.command(f"DROP DATABASE IF EXISTS {fresh.database}")
    once = [(name, query) for name, query in _schema(ch) if name != "schema_migrations"]
    assert twice == once
    assert {"events_store", "events", "profiles", "audience_members"} <= {name for name, _ in once}


def test_views_are_made_after_the_views_they_read() -> None:
    views = view_definitions(db="cdp")
    order = [view.name for view in views]
    for view in views:
        for other in set(re.findall(r"\bcdp\.(\w+)", view.select)) & set(order):
            assert order.index(other) < order.index(view.name), (other, view.name)
    assert order.index("profile_stats_of") < order.index("profile_stats")
    assert order.index("events_as_landing") < order.index("anonymous_profiles_landing_mv")


def test_a_changed_or_missing_view_is_made_again_and_an_unchanged_one_is_left(ch) -> None:
    db = ch.database
    ch.command(f"DROP VIEW {db}.profiles")
    ch.command(f"CREATE OR REPLACE VIEW {db}.profile_stats AS SELECT '' AS profile_id")
    ch.command(f"TRUNCATE TABLE {db}.schema_views")  # no record at all: as in a store made before views had files
    ch.insert("schema_views", [("profile_stats", "an older file")], ["name", "checksum"])
    assert sorted(apply_views(ch)) == ["profile_stats.sql", "profiles.sql"]
    assert apply_views(ch) == []
    assert ch.scalar(f"SELECT count() FROM system.columns WHERE database = '{db}' AND table = 'profiles'") > 5
    assert ch.query(f"SELECT orders, revenue FROM {db}.profile_stats")[1] == []


def test_a_materialized_view_is_swapped_when_its_file_changes(ch) -> None:
    db = ch.database
    ch.command(f"DROP VIEW {db}.events_landing_mv")
    ch.command(
        f"CREATE MATERIALIZED VIEW {db}.events_landing_mv TO {db}.events_store AS "
        f"SELECT messageId AS message_id FROM {db}.events_landing WHERE 0"
    )
    ch.insert("schema_views", [("events_landing_mv", "an older file")], ["name", "checksum"])
    assert apply_views(ch) == ["events_landing_mv.sql"]
    ch.insert_json_lines("events_landing", [b'{"messageId": "m-after", "type": "track", "event": "E"}'])
    assert ch.query(f"SELECT message_id, event FROM {db}.events")[1] == [("m-after", "E")]


def test_a_view_file_names_one_view_of_its_own_name() -> None:
    with pytest.raises(ValueError, match=r"profiles\.sql"):
        parse_view("profiles", "CREATE VIEW {db}.other AS SELECT 1", db="cdp")
    with pytest.raises(ValueError, match="TO a table"):
        parse_view("x", "CREATE MATERIALIZED VIEW {db}.x AS SELECT 1", db="cdp")
    with pytest.raises(ValueError, match="one source"):
        parse_view("x", "-- history: h in place of s\nCREATE VIEW {db}.x AS SELECT 1", db="cdp")


def _event(mid: str) -> dict:
    return {
        "messageId": mid,
        "type": "track",
        "event": "E",
        "anonymousId": "a",
        "channel": "online",
        "timestamp": "2026-01-02T03:04:05.678Z",
        "receivedAt": datetime.now(UTC).isoformat(),
        "properties": {"revenue": 10},
    }


def test_retried_block_is_stored_once(ch) -> None:
    rows = [event_row(_event(f"m{i}")) for i in range(100)]
    ch.insert("events_store", rows, EVENT_COLUMNS, dedup_token="topic|0:0-99")
    ch.insert("events_store", rows, EVENT_COLUMNS, dedup_token="topic|0:0-99")  # forced retry
    assert ch.scalar(f"SELECT count() FROM {ch.database}.events_store") == 100


def test_redelivered_events_show_once_through_the_view(ch) -> None:
    rows = [event_row(_event(f"m{i}")) for i in range(50)]
    ch.insert("events_store", rows, EVENT_COLUMNS, dedup_token="a")
    ch.insert("events_store", rows[10:30], EVENT_COLUMNS, dedup_token="b")  # redelivered in another batch
    assert ch.scalar(f"SELECT count() FROM {ch.database}.events_store") == 70
    assert ch.scalar(f"SELECT count() FROM {ch.database}.events") == 50
