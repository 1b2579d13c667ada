"""Property test: the incrementally kept profile state (sinks/migrations/010_profile_state.sql) equals a
from-scratch recomputation over the deduplicated events, whatever order events, redeliveries, merges (identity
changes arriving after the events they move), rollup steps, rollup restarts and background merges come in: the
profile API's read and the exact fold of every profile (`profiles_of(keys = [])`) at any moment, and the analysts'
`profiles` (the rollup's stored rows) once the rollup has stepped.

The reference is the previous definition of the views (002/004/007: every profile recomputed from all events
through `events_with_profile`), with the same tie-breaks as the state (latest by event time, then message id,
then position in the event), run on the same engine. Consent, which folds otherwise, is held to its specification
(schemas/consent.py) at the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.consent import Choice, profile_consent
from sinks.clickhouse import ClickHouse
from sinks.migrate import apply_views, migration_files, statements, view_definitions
from sinks.profile_rollup import ProfileRollup
from sinks.profile_sql import read_profile
from sinks.rows import EVENT_COLUMNS, IDENTITY_COLUMNS, MERGE_COLUMNS, event_row, identity_row

REFERENCE_SQL = """
SELECT ids.profile_id AS profile_id, ids.identifiers AS identifiers, t.traits AS traits,
       s.first_seen AS first_seen, s.last_seen AS last_seen, s.events AS events,
       s.events_by_type AS events_by_type, s.events_by_channel AS events_by_channel, s.orders AS orders,
       round(s.revenue, 6) AS revenue, s.revenue_by_currency AS revenue_by_currency, s.last_channel AS last_channel,
       s.channels AS channels
FROM
(
    SELECT profile_id, arraySort(groupArray((toString(id_type), id_value))) AS identifiers
    FROM {db}.identities GROUP BY profile_id
) AS ids
LEFT JOIN
(
    SELECT profile_id, min(timestamp) AS first_seen, max(timestamp) AS last_seen, count() AS events,
           sumMap(map(toString(type), toUInt64(1))) AS events_by_type,
           sumMap(map(toString(channel), toUInt64(1))) AS events_by_channel,
           countIf(type = 'track' AND event = 'Order Completed') AS orders,
           sumIf(JSONExtractFloat(properties, 'revenue'), type = 'track' AND event = 'Order Completed') AS revenue,
           sumMapIf(map(upper(JSONExtractString(properties, 'currency')), JSONExtractFloat(properties, 'revenue')),
                    type = 'track' AND event = 'Order Completed') AS revenue_by_currency,
           argMax(toString(channel), (timestamp, message_id)) AS last_channel,
           arraySort(groupUniqArray(toString(channel))) AS channels
    FROM {db}.events_with_profile WHERE profile_id != '' GROUP BY profile_id
) AS s ON s.profile_id = ids.profile_id
LEFT JOIN
(
    SELECT profile_id,
           CAST(mapFromArrays(groupArrayIf(k, kind = 't'), groupArrayIf(v, kind = 't')), 'Map(String, String)')
               AS traits
    FROM
    (
        SELECT profile_id, kind, k, if(startsWith(raw, '"'), JSONExtractString(raw), raw) AS v
        FROM
        (
            SELECT profile_id, x.1 AS kind, x.2 AS k, argMax(x.3, (timestamp, message_id, n)) AS raw
            FROM
            (
                SELECT profile_id, timestamp, message_id, arrayConcat(
                    arrayMap(p -> ('t', p.1, p.2), JSONExtractKeysAndValuesRaw(context, 'traits')),
                    arrayMap(p -> ('t', p.1, p.2), JSONExtractKeysAndValuesRaw(if(type = 'group', '{}', traits)))
                ) AS pairs  -- (a group call's traits are the group's)
                FROM {db}.events_with_profile WHERE profile_id != ''
            )
            ARRAY JOIN pairs AS x, arrayEnumerate(pairs) AS n
            GROUP BY profile_id, kind, k
        )
        WHERE raw != 'null'
    )
    GROUP BY profile_id
) AS t ON t.profile_id = ids.profile_id
ORDER BY profile_id
"""
# consent has a fold of its own, not the latest value of the traits (the tests at the end of this module)
COLUMNS = (
    "profile_id, identifiers, traits, first_seen, last_seen, events, events_by_type, events_by_channel, "
    "orders, round(revenue, 6) AS revenue, revenue_by_currency, last_channel, channels"
)
REFERENCE_EVENTS_SQL = """
SELECT message_id, type, event, channel, timestamp, properties FROM {db}.events_with_profile
WHERE profile_id = {p:String} ORDER BY timestamp DESC, message_id DESC LIMIT 50
"""
# the groups the profile API shows, as the analysts' views define them
REFERENCE_GROUPS_SQL = """
SELECT pg.group_id AS group_id, g.traits AS traits, pg.first_seen AS first_seen, pg.last_seen AS last_seen
FROM {db}.profile_groups AS pg LEFT JOIN {db}.groups AS g ON g.group_id = pg.group_id
WHERE pg.profile_id = {p:String} ORDER BY pg.first_seen, pg.group_id
"""
TABLES = (
    "events_store",
    "identities_store",
    "merges_store",
    "events_by_key",
    "profile_keys",
    "profile_touches",
    "profile_traits_by_key",
    "profile_key_totals",
    "profile_totals",
    "profile_rollup",
)
START = datetime(2026, 11, 1, tzinfo=UTC)
COLUMNS_STORED = (*EVENT_COLUMNS, "group_id")
KEYS = [f"user_id:u{i}" for i in range(4)] + ["email:a@x.io", "anonymous_id:c1", ""]
PROFILES = ["pA", "pB", "pC"]


@pytest.fixture(scope="module")
def db(module_db: ClickHouse) -> ClickHouse:
    return module_db


def clear(ch: ClickHouse) -> None:
    for table in TABLES:
        ch.command(f"TRUNCATE TABLE {ch.database}.{table}")


def event(n: int, key: str, profile: str, kind: int, minute: int, channel: str) -> dict[str, Any]:
    """Track, order (revenue), identify with traits (one of them unset by JSON null at times), consent, a group
    call (an account's traits, one of them unset by JSON null at times)."""
    e: dict[str, Any] = {
        "messageId": f"m{n}",
        "channel": channel,
        "profileId": profile,
        "identityKey": key,
        "timestamp": (START + timedelta(minutes=minute)).isoformat(),
        "receivedAt": START.isoformat(),
    }
    if kind == 0:
        e |= {"type": "track", "event": "Product Viewed"}
    elif kind == 1:
        properties = {"revenue": 10.5 + n, "currency": ["eur", "USD", ""][n % 3]}
        e |= {"type": "track", "event": "Order Completed", "properties": properties}
    elif kind == 2:
        e |= {"type": "identify", "traits": {"plan": ["free", "pro", None][n % 3], "n": n}}
    elif kind == 4:
        traits = {"industry": ["retail", "energy", None][n % 3], "seats": n}
        e |= {"type": "group", "groupId": ["acme", "globex"][n % 2], "traits": traits}
    else:
        e |= {
            "type": "page",
            "context": {"traits": {"plan": "ctx"}, "consent": {"categoryPreferences": {"ads": n % 2 == 0}}},
        }
    return e


# One step: ("events", [(key index, profile index, kind, minute, channel index)...]), ("redeliver", batch index),
# ("identity", key index, profile index) (the identifier moves: a merge after its events), ("rollup",),
# ("restart",) (a new rollup on the same tables), ("optimize",) (background merges done).
event_spec = st.tuples(
    st.integers(0, len(KEYS) - 1), st.integers(0, 2), st.integers(0, 4), st.integers(0, 30), st.integers(0, 2)
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("events"), st.lists(event_spec, min_size=1, max_size=6)),
        st.tuples(st.just("redeliver"), st.integers(0, 10)),
        st.tuples(st.just("identity"), st.integers(0, len(KEYS) - 2), st.integers(0, 2)),
        st.tuples(st.just("rollup")),
        st.tuples(st.just("restart")),
        st.tuples(st.just("optimize")),
    ),
    min_size=3,
    max_size=10,
)


def play(ch: ClickHouse, plan: list[tuple[Any, ...]]) -> None:
    clear(ch)
    counter = itertools.count()
    batches: list[list[tuple[Any, ...]]] = []
    versions: dict[str, int] = {}
    owners: dict[str, str] = {}
    rollup = ProfileRollup(ch, chunk=3)
    for step in plan:
        if step[0] == "events":
            rows = []
            for k, p, kind, minute, c in step[1]:
                n = next(counter)
                key = KEYS[k]
                e = event(n, key, PROFILES[p], kind, minute, ["online", "mobile", "offline"][c])
                rows.append((*event_row(e), e.get("groupId", "")))
                if key and key not in versions:  # the stitcher writes a new identifier with its event
                    versions[key], owners[key] = 1, PROFILES[p]
                    set_identity(ch, key, PROFILES[p], 1)
            batches.append(rows)
            ch.insert("events_store", rows, COLUMNS_STORED)
        elif step[0] == "redeliver" and batches:
            ch.insert("events_store", batches[step[1] % len(batches)], COLUMNS_STORED)
        elif step[0] == "identity":
            key, into = KEYS[step[1]], PROFILES[step[2]]
            old = owners.get(key, "")
            versions[key] = versions.get(key, 0) + 1
            set_identity(ch, key, into, versions[key])
            owners[key] = into
            if old and old != into:
                ch.insert("merges_store", [(old, into, "m", START, START)], MERGE_COLUMNS)
        elif step[0] == "rollup":
            rollup.step()
        elif step[0] == "restart":
            rollup = ProfileRollup(ch, chunk=3)
            rollup.touch_all_if_stale()
            rollup.step()
        elif step[0] == "optimize":
            for table in TABLES[3:-1]:
                ch.command(f"OPTIMIZE TABLE {ch.database}.{table} FINAL")


def set_identity(ch: ClickHouse, key: str, profile: str, version: int) -> None:
    id_type, value = key.split(":", 1)
    ms = int(START.timestamp() * 1000)
    row = {"id_type": id_type, "id_value": value, "profile_id": profile, "first_seen_ms": ms, "updated_ms": ms}
    ch.insert("identities_store", [identity_row({**row, "version": version})], IDENTITY_COLUMNS)


def rows_of(ch: ClickHouse, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in ch.query(sql.replace("{db}", ch.database), params)[1]]


def profiles_differ(ch: ClickHouse) -> Iterator[str]:
    """Every way of reading profiles against the reference: the exact fold and the API now, then `profiles`
    after a rollup step (its stored rows lag until then)."""
    expected = rows_of(ch, REFERENCE_SQL)
    exact = rows_of(ch, f"SELECT {COLUMNS} FROM {{db}}.profiles_of(keys = []) ORDER BY profile_id")
    if exact != expected:
        yield f"exact fold: {exact} != {expected}"
    names = [c.split(" AS ")[-1].strip() for c in COLUMNS.replace("revenue, 6", "revenue").split(", ")]
    for row in expected:
        p = row[0]
        found = read_profile(ch, p)
        one = found and tuple(round(found.row[n], 6) if n == "revenue" else found.row[n] for n in names)
        if one != row:
            yield f"profile {p}: {one} != {row}"
        events = [tuple(e.values()) for e in found.events] if found else []
        if events != rows_of(ch, REFERENCE_EVENTS_SQL, {"p": p}):
            yield f"events of {p} differ"
        groups = [tuple(g.values()) for g in found.groups] if found else []
        if groups != (reference := rows_of(ch, REFERENCE_GROUPS_SQL, {"p": p})):
            yield f"groups of {p}: {groups} != {reference}"
    if read_profile(ch, "nobody") is not None:
        yield "a profile nobody holds was found"
    ProfileRollup(ch).step()
    stored = rows_of(ch, f"SELECT {COLUMNS} FROM {{db}}.profiles ORDER BY profile_id")
    if stored != expected:
        yield f"profiles view after a rollup step: {stored} != {expected}"


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(plan=steps)
def test_profiles_equal_a_recomputation(db: ClickHouse, plan: list[tuple[Any, ...]]) -> None:
    play(db, plan)
    assert list(profiles_differ(db)) == []


def test_rollup_takes_over_and_reads_stay_exact(db: ClickHouse) -> None:
    """After a rollup the totals serve the untouched keys; a later event on one key is live until the next."""
    play(db, [("events", [(0, 0, 1, 1, 0), (1, 1, 0, 2, 1), (4, 0, 2, 3, 2)]), ("rollup",)])
    assert db.scalar(f"SELECT count() FROM {db.database}.profile_key_totals") == 3
    assert db.scalar(f"SELECT count() FROM {db.database}.profile_dirty_keys") == 0
    ch = db
    ch.insert("events_store", [event_row(event(99, KEYS[0], "pA", 1, 9, "mobile"))], EVENT_COLUMNS)
    assert rows_of(ch, "SELECT key FROM {db}.profile_dirty_keys") == [(KEYS[0],)]
    assert list(profiles_differ(ch)) == []


def test_profiles_reads_the_stored_rows_until_the_next_rollup(db: ClickHouse) -> None:
    """After a rollup, `profiles` reads each profile's stored row; an identifier that then moves from pB to pA
    (a merge after the events it moves) shows in the API at once, and in `profiles` at the next rollup step, which
    stores both profiles' new rows (pB, holding nothing any more, as deleted)."""
    play(db, [("events", [(0, 0, 1, 1, 0), (1, 1, 1, 2, 1), (2, 2, 2, 3, 2)]), ("rollup",)])
    assert db.scalar(f"SELECT count() FROM {db.database}.profile_totals FINAL") == 3
    update = f"ALTER TABLE {db.database}.profile_totals UPDATE orders = {{n:UInt64}} WHERE profile_id = 'pC'"
    db.command(update, {"n": 7}, settings={"mutations_sync": 2})
    assert rows_of(db, "SELECT orders FROM {db}.profiles WHERE profile_id = 'pC'") == [(7,)]  # the stored row
    db.command(update, {"n": 0}, settings={"mutations_sync": 2})
    set_identity(db, KEYS[1], "pA", 2)
    db.insert("merges_store", [("pB", "pA", "m", START, START)], MERGE_COLUMNS)
    assert rows_of(db, "SELECT profile_id, orders FROM {db}.profiles ORDER BY profile_id") == [
        ("pA", 1),
        ("pB", 1),
        ("pC", 0),
    ]
    assert read_profile(db, "pB") is None and read_profile(db, "pA").row["orders"] == 2  # type: ignore[union-attr]
    assert list(profiles_differ(db)) == []  # (it steps the rollup)
    assert db.scalar(f"SELECT count() FROM {db.database}.profile_totals FINAL") == 2  # pB holds nothing now


def test_an_existing_store_gets_its_per_key_state(db: ClickHouse) -> None:
    """Events and identities stored before the per-key state: creating its views fills it from history (their
    `history` lines, the view reading events_by_key first), so profiles are whole at once."""
    play(db, [("events", [(0, 0, 1, 1, 0), (1, 1, 2, 2, 1), (4, 0, 2, 3, 2)]), ("identity", 1, 0)])
    per_key_views = [v.name for v in view_definitions(db=db.database) if v.target in TABLES[3:]]
    for view in per_key_views:
        db.command(f"DROP VIEW {db.database}.{view}")
    for table in TABLES[3:]:
        db.command(f"TRUNCATE TABLE {db.database}.{table}")
    assert read_profile(db, "pA") is None
    assert sorted(apply_views(db)) == sorted(f"{view}.sql" for view in per_key_views)
    assert read_profile(db, "pA") is not None
    assert db.scalar(f"SELECT count() FROM {db.database}.profile_dirty_keys") > 0  # the rollup has them to do
    assert list(profiles_differ(db)) == []


def test_the_per_key_tables_rebuilt_with_small_granules_are_filled_again(db: ClickHouse) -> None:
    """Migration 025 on a store that holds events: the per-key tables are created again with granules of 1024
    rows, and the views the next start re-creates fill them from the events, so profiles read as before."""
    play(db, [("events", [(0, 0, 1, 1, 0), (1, 1, 2, 2, 1), (4, 0, 4, 3, 2), (5, 2, 3, 4, 0)]), ("identity", 1, 0)])
    before = {p: read_profile(db, p) for p in PROFILES}
    sql = next(sql for version, _, sql in migration_files() if version == 25)
    for statement in statements(sql, db=db.database):
        db.command(statement)
    emptied = read_profile(db, "pA")
    assert emptied is not None and emptied.row["events"] == 0  # until the views are back
    assert {"events_by_key_mv.sql", "profile_traits_by_key_mv.sql", "consent_by_key_mv.sql"} <= set(apply_views(db))
    assert {p: read_profile(db, p) for p in PROFILES} == before
    for table in ("events_by_key", "profile_traits_by_key", "consent_by_key"):
        assert "index_granularity = 1024" in db.scalar(f"SHOW CREATE TABLE {db.database}.{table}")
    assert list(profiles_differ(db)) == []


# ---- consent: the views and the profile read fold as schemas/consent.py specifies ------------------------------

CONSENT_KEYS = ["user_id:u1", "email:a@x.io", "anonymous_id:c1"]
CONSENT_TABLES = ("events_store", "identities_store", "merges_store", "consent_by_key", "events_by_key", "profile_keys")


def consent_line(n: int, choice: Choice, stitched: str) -> bytes:
    """The event of one choice as the sink lands it, stamped as the collector stamps."""
    stamp = "purposes" if choice.explicit else "defaults"
    event = {
        "messageId": f"m{n}",
        "type": "track",
        "event": "E",
        "channel": "online",
        "profileId": stitched,
        "identityKey": choice.key,
        "timestamp": choice.at.isoformat(),
        "receivedAt": choice.at.isoformat(),
        "context": {"consent": {stamp: {choice.purpose: choice.granted}}},
    }
    return orjson.dumps(event)


def own_all(ch: ClickHouse, key: str, profile: str) -> None:
    id_type, value = key.split(":", 1)
    ms = int(START.timestamp() * 1000)
    row = {"id_type": id_type, "id_value": value, "profile_id": profile, "first_seen_ms": ms, "updated_ms": ms}
    ch.insert("identities_store", [identity_row({**row, "version": 1})], IDENTITY_COLUMNS)


def folded_by_views(ch: ClickHouse, keys: list[str]) -> dict[str, bool]:
    view = f"{ch.database}.profile_consent_of(keys = {{k:Array(String)}})"
    sql = f"SELECT purpose, granted FROM {view} WHERE profile_id = 'pA'"
    return {purpose: bool(g) for purpose, g in ch.query(sql, {"k": keys})[1]}


choices_st = st.lists(
    st.tuples(
        st.integers(0, len(CONSENT_KEYS) - 1),
        st.sampled_from(["advertising", "analytics"]),
        st.booleans(),
        st.booleans(),
        st.integers(0, 20),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(raw=choices_st, merge_minute=st.one_of(st.none(), st.integers(0, 20)))
# a denial and a later yes by two keys before the merge: denied; the same, the yes after the merge: granted
@example(raw=[(1, "advertising", False, True, 1), (0, "advertising", True, True, 2)], merge_minute=5)
@example(raw=[(1, "advertising", False, True, 1), (0, "advertising", True, True, 9)], merge_minute=5)
# defaults only where nobody chose: an explicit yes outranks a later default no, whatever the merge
@example(
    raw=[(2, "analytics", True, True, 1), (0, "analytics", False, False, 3), (1, "analytics", True, False, 4)],
    merge_minute=2,
)
def test_the_views_and_the_profile_read_fold_as_the_specification(
    db: ClickHouse, raw: list[tuple[int, str, bool, bool, int]], merge_minute: int | None
) -> None:
    ch = db
    for table in CONSENT_TABLES:
        ch.command(f"TRUNCATE TABLE {ch.database}.{table}")
    choices = [
        Choice(CONSENT_KEYS[k], p, g, START + timedelta(minutes=m, seconds=n), e, f"m{n}")
        for n, (k, p, g, e, m) in enumerate(raw)
    ]
    merged_at = None if merge_minute is None else START + timedelta(minutes=merge_minute, seconds=30)
    stitched = [
        "pA" if merged_at is None or c.at >= merged_at or c.key == CONSENT_KEYS[0] else f"p{c.key}" for c in choices
    ]
    ch.insert_json_lines(
        "events_landing", [consent_line(n, c, p) for n, (c, p) in enumerate(zip(choices, stitched, strict=True))]
    )
    for key in CONSENT_KEYS:
        own_all(ch, key, "pA")
    if merged_at is not None:
        rows: list[tuple[Any, ...]] = [(f"p{k}", "pA", "m", merged_at, merged_at) for k in CONSENT_KEYS[1:]]
        ch.insert("merges_store", rows, MERGE_COLUMNS)
    expected = profile_consent(choices, merged_at)
    assert folded_by_views(ch, []) == expected
    assert folded_by_views(ch, CONSENT_KEYS) == expected
    found = read_profile(ch, "pA")
    assert found is not None
    assert found.row["consent"] == {p: "true" if g else "false" for p, g in expected.items()}
