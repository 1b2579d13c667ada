"""The `merges` view on chDB: one row per merged-away profile, its latest merge, with when the stitcher merged and
when the causing event happened; a profile that holds identifiers again (the label moved back to it) has none."""

from __future__ import annotations

from datetime import UTC, datetime

from sinks.clickhouse import ClickHouse
from sinks.rows import IDENTITY_COLUMNS, MERGE_COLUMNS, identity_row, merge_row


def ms(year: int, minute: int = 0) -> int:
    return int(datetime(year, 1, 1, 0, minute, tzinfo=UTC).timestamp() * 1000)


def merge(a: str, b: str, cause: str, merged_ms: int, event_ms: int) -> dict[str, object]:
    return dict(from_profile=a, into_profile=b, cause=cause, ts_ms=event_ms, event_ms=event_ms, merged_ms=merged_ms)


def test_a_pair_recorded_both_ways_is_one_merge_with_both_times(ch: ClickHouse) -> None:
    # A web visit (user id and cookie at one instant: the cookie's profile wins the tie), then a CRM row dated
    # 2019 for the user id: the label moves back to the user id's profile, which holds the identifiers now.
    records = [
        merge("p-user", "p-cookie", "web-1", ms(2026, 1), ms(2026)),
        merge("p-cookie", "p-user", "crm-1", ms(2026, 5), ms(2019)),
        merge("p-other", "p-user", "web-2", ms(2026, 6), ms(2026, 6)),
    ]
    ch.insert("merges_store", [merge_row(r) for r in records], MERGE_COLUMNS)
    held = {"id_type": "user_id", "id_value": "u1", "profile_id": "p-user", "first_seen_ms": ms(2019)}
    ch.insert("identities_store", [identity_row({**held, "updated_ms": ms(2026, 5), "version": 2})], IDENTITY_COLUMNS)
    cols, rows = ch.query(f"SELECT * FROM {ch.database}.merges ORDER BY from_profile")
    found = [dict(zip(cols, r, strict=True)) for r in rows]
    assert [(m["from_profile"], m["into_profile"], m["cause"]) for m in found] == [
        ("p-cookie", "p-user", "crm-1"),
        ("p-other", "p-user", "web-2"),
    ]
    assert found[0]["merged_at"].replace(tzinfo=UTC) == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert found[0]["event_time"].replace(tzinfo=UTC) == datetime(2019, 1, 1, tzinfo=UTC)


def test_the_latest_merge_of_a_profile_is_its_row(ch: ClickHouse) -> None:
    records = [merge("p1", "p2", "e1", ms(2026, 1), ms(2026, 1)), merge("p1", "p3", "e2", ms(2026, 2), ms(2026, 2))]
    ch.insert("merges_store", [merge_row(r) for r in records], MERGE_COLUMNS)
    assert ch.query(f"SELECT from_profile, into_profile FROM {ch.database}.merges")[1] == [("p1", "p3")]
