"""What the console reads (sinks/console_reads.py) on chDB: an audience's size per day as the running sum of its
entries and exits, a compiled audience's size without storing it, and the merges on either side of a profile."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.audience import validate_rule
from sinks.audience_eval import MEMBER_COLUMNS
from sinks.audience_sql import compile_audience
from sinks.clickhouse import ClickHouse
from sinks.console_reads import membership_history, merges_of, preview_size
from sinks.rows import IDENTITY_COLUMNS, MERGE_COLUMNS, identity_row


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


VIEW_MERGES_SQL = """
SELECT from_profile, into_profile, cause, merged_at FROM {db}.merges
WHERE into_profile = {p:String} OR from_profile = {p:String}
ORDER BY merged_at DESC, from_profile LIMIT 100
"""
merge_steps = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(1, 9), st.booleans()), min_size=1, max_size=8
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=merge_steps)
def test_merges_of_a_profile_are_the_merges_views_rows_of_it(
    ch: ClickHouse, steps: list[tuple[int, int, int, bool]]
) -> None:
    """Random merges (pairs both ways, repeats, profiles that hold an identifier again): merges_of reads what the
    analysts' `merges` view holds for the profile."""
    for table in ("merges_store", "identities_store", "profile_keys"):
        ch.command(f"TRUNCATE TABLE {ch.database}.{table}")
    version = 0
    for a, b, day, label_back in steps:
        if a == b:
            continue
        ch.insert("merges_store", [(f"p{a}", f"p{b}", f"m{day}", at(day), at(day))], MERGE_COLUMNS)
        version += 1  # the identifier moves into the surviving profile, or (the label coming back) stays with a
        owner = f"p{a}" if label_back else f"p{b}"
        row = {"id_type": "user_id", "id_value": f"u{a}", "profile_id": owner, "first_seen_ms": 0, "updated_ms": 0}
        ch.insert("identities_store", [identity_row({**row, "version": version})], IDENTITY_COLUMNS)
    for p in (f"p{i}" for i in range(5)):
        mine = sorted((m["from_profile"], m["into_profile"], m["cause"], m["merged_at"]) for m in merges_of(ch, p))
        view = sorted(tuple(r) for r in ch.query(VIEW_MERGES_SQL.replace("{db}", ch.database), {"p": p})[1])
        assert mine == view, p
