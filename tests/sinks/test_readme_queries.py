"""Every SQL example in README.md runs on the real engine against the real schema, and finds the one customer
seeded for it (a query that runs but no longer counts anybody would pass a mere "it runs")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sinks.audience_eval import MEMBER_COLUMNS
from sinks.clickhouse import ClickHouse
from sinks.profile_rollup import ProfileRollup
from sinks.rows import EVENT_COLUMNS, IDENTITY_COLUMNS, event_row, identity_row

README = Path(__file__).resolve().parents[2] / "README.md"
QUERIES = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)


def seed_one_customer(ch: ClickHouse) -> None:
    """One anonymous id; viewed, added, bought (revenue 120) an hour apart; a member of two audiences."""
    start = datetime.now(UTC) - timedelta(days=2)
    steps = ["Product Viewed", "Product Added", "Order Completed"]
    events = [
        {
            "messageId": f"m{i}",
            "type": "track",
            "event": name,
            "anonymousId": "a1",
            "profileId": "p1",
            "channel": "online",
            "timestamp": (start + timedelta(hours=i)).isoformat(),
            "receivedAt": (start + timedelta(hours=i)).isoformat(),
            "properties": {"revenue": 120} if name == "Order Completed" else {},
        }
        for i, name in enumerate(steps)
    ]
    ch.insert("events_store", [event_row(e) for e in events], EVENT_COLUMNS)
    ms = int(start.timestamp() * 1000)
    identity = {"id_type": "anonymous_id", "id_value": "a1", "profile_id": "p1", "first_seen_ms": ms, "updated_ms": ms}
    ch.insert("identities_store", [identity_row({**identity, "version": 1})], IDENTITY_COLUMNS)
    members = [(a, "p1", "profile_id", "entered", start) for a in ("aud_a", "aud_b")]
    ch.insert("audience_members", members, MEMBER_COLUMNS)
    audiences = [(a, f"Name of {a}", "profile", "{}", start, 0, 1) for a in ("aud_a", "aud_b")]
    ch.insert("audiences", audiences, ["audience_id", "name", "scope", "rule", "created_at", "deleted", "version"])
    ProfileRollup(ch).step()  # `profiles` holds the rows as of the rollup's last step


def test_readme_has_examples() -> None:
    assert len(QUERIES) >= 4


@pytest.mark.parametrize("query", QUERIES, ids=[f"q{i}" for i in range(len(QUERIES))])
def test_example_counts_the_seeded_customer(ch: ClickHouse, query: str) -> None:
    seed_one_customer(ch)
    _, rows = ch.query(query.replace("cdp.", f"{ch.database}."))
    assert rows, "no row"
    counts = [v for v in rows[0] if isinstance(v, int | float) and not isinstance(v, bool)]
    assert any(v > 0 for v in counts), f"the first row counts nobody: {rows[0]}"


def test_the_overlap_example_names_the_audiences(ch: ClickHouse) -> None:
    seed_one_customer(ch)
    (query,) = [q for q in QUERIES if "audience_members_current AS b" in q]
    _, rows = ch.query(query.replace("cdp.", f"{ch.database}."))
    assert [list(r) for r in rows] == [["Name of aud_a", "Name of aud_b", 1]]


def test_the_table_of_analyst_tables_is_one_table() -> None:
    """Markdown ends a table at the first line that is not a row: a paragraph or blank line inside splits it."""
    section = README.read_text().split("## Tables for analysts", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("|")]
    assert rows == list(range(rows[0], rows[-1] + 1)), "a line that is not a row interrupts the table"
    table = "\n".join(lines[i] for i in rows)
    assert "`events` (view" in table and "`profiles` (view)" in table and "`audience_members`" in table
