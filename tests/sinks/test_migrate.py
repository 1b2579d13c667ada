import uuid
from datetime import UTC, datetime

from sinks.clickhouse import ClickHouse
from sinks.migrate import migrate, migration_files, statements
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
                for stmt in statements(sql, db=fresh.database, ttl_days=90):
                    fresh.command(stmt)
        twice = [(name, query.replace(fresh.database, ch.database)) for name, query in _schema(fresh)]
    finally:
        fresh.command(f"DROP DATABASE IF EXISTS {fresh.database}")
    once = [(name, query) for name, query in _schema(ch) if name != "schema_migrations"]
    assert twice == once
    assert {"events_store", "events", "profiles", "audience_members"} <= {name for name, _ in once}


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
