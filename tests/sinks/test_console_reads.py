"""What the console reads (sinks/console_reads.py) on chDB: an audience's size per day as the running sum of its
entries and exits, a compiled audience's size without storing it, and the merges on either side of a profile."""

from __future__ import annotations

from datetime import UTC, date, datetime

from schemas.audience import validate_rule
from sinks.audience_eval import MEMBER_COLUMNS
from sinks.audience_sql import compile_audience
from sinks.clickhouse import ClickHouse
from sinks.console_reads import membership_history, merges_of, preview_size
from sinks.rows import MERGE_COLUMNS


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def test_membership_history_is_the_size_at_the_end_of_each_day(ch: ClickHouse) -> None:
    rows = [
        ("a1", "p1", "profile", "entered", at(1)),
        ("a1", "p2", "profile", "entered", at(1, 13)),
        ("a1", "p1", "profile", "exited", at(3)),
        ("a2", "p9", "profile", "entered", at(2)),
    ]
    ch.insert("audience_members", rows, MEMBER_COLUMNS)
    assert membership_history(ch, "a1", today=date(2026, 3, 4)) == [
        {"day": "2026-03-01", "size": 2},
        {"day": "2026-03-02", "size": 2},
        {"day": "2026-03-03", "size": 1},
        {"day": "2026-03-04", "size": 1},
    ]
    assert membership_history(ch, "nobody") == []


def test_preview_size_counts_the_members_a_rule_has_now(ch: ClickHouse) -> None:
    rule = validate_rule({"computed": "events", "op": "gte", "value": 0}, "profile")
    assert preview_size(ch, compile_audience(rule, "profile", ch.database)) == 0


def test_merges_of_a_profile_are_those_into_it_and_out_of_it(ch: ClickHouse) -> None:
    rows = [("p1", "p2", "m1", at(1), at(1)), ("p2", "p3", "m2", at(2), at(2)), ("p7", "p8", "m3", at(3), at(3))]
    ch.insert("merges_store", rows, MERGE_COLUMNS)
    assert [(m["from_profile"], m["into_profile"]) for m in merges_of(ch, "p2")] == [("p2", "p3"), ("p1", "p2")]
