"""The DMP side in the real engine: aggregation per cookie/device, and retention by TTL."""

from datetime import UTC, datetime, timedelta

import orjson

from sinks.migrate import apply_views, migration_files, statements
from tests.sinks.fixtures import consented


def _land(ch, events: list[dict]) -> None:
    """Through the landing table, as the sink writes: both the events view and the anonymous view read it."""
    ch.insert_json_lines("events_landing", [orjson.dumps(e) for e in events])


def _event(mid: str, anon: str, when: datetime, **extra) -> dict:
    """A cookie's event with advertising consent (the DMP side keeps no other: tests/e2e/test_consent.py)."""
    context = consented(extra.pop("context", {}))
    return {
        "messageId": mid,
        "type": extra.pop("type", "page"),
        "anonymousId": anon,
        "channel": "online",
        "timestamp": when.isoformat(),
        "receivedAt": when.isoformat(),
        "context": context,
        **extra,
    }


def test_aggregates_behaviour_and_device_without_pii(ch) -> None:
    now = datetime.now(UTC)
    ctx = {
        "device": {"id": "dev-1"},
        "locale": "de-DE",
        "ip": "203.0.113.9",
        "ua": {"device_type": "mobile", "os": "iOS", "browser": "Mobile Safari"},
        "traits": {"email": "anna@example.com"},
    }
    _land(
        ch,
        [
            _event("m1", "c1", now, properties={"path": "/pricing"}, context=ctx),
            _event(
                "m2", "c1", now, type="track", event="Product Viewed", properties={"category": "shoes"}, context=ctx
            ),
        ],
    )
    cols, got = ch.query(
        f"SELECT * FROM {ch.database}.anonymous_profiles WHERE id_value IN ('c1', 'dev-1') ORDER BY id_type"
    )
    profiles = [dict(zip(cols, r, strict=True)) for r in got]
    assert [(p["id_type"], p["id_value"]) for p in profiles] == [("anonymous_id", "c1"), ("device_id", "dev-1")]
    p = profiles[0]
    assert (p["events"], p["pages"], p["page_counts"], p["category_counts"]) == (2, 1, {"/pricing": 1}, {"shoes": 1})
    assert (p["device_type"], p["os"], p["browser"], p["country"]) == ("mobile", "iOS", "Mobile Safari", "DE")
    assert "anna@example.com" not in repr(profiles) and "203.0.113.9" not in repr(profiles)


def test_rows_past_retention_disappear(ch) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=200)  # retention is 90 days
    _land(ch, [_event("old", "c-old", old), _event("new", "c-new", now)])
    view = f"SELECT id_value FROM {ch.database}.anonymous_profiles WHERE id_type = 'anonymous_id' ORDER BY 1"
    assert [r[0] for r in ch.query(view)[1]] == ["c-new"]  # hidden at once
    store = f"SELECT DISTINCT id_value FROM {ch.database}.anonymous_profiles_store ORDER BY 1"
    ch.command(f"OPTIMIZE TABLE {ch.database}.anonymous_profiles_store FINAL")  # a merge applies the TTL
    assert [r[0] for r in ch.query(store)[1]] == ["c-new"]  # and physically removed


def test_placeholder_ids_get_no_anonymous_profile(ch) -> None:
    now = datetime.now(UTC)
    junk = ["0", "00000000-0000-0000-0000-000000000000", " undefined ", "NULL", "-1", "[object Object]", ""]
    events = [_event(f"j{i}", anon, now, context={"device": {"id": "0000-0000"}}) for i, anon in enumerate(junk)]
    events.append(_event("real", "c-real", now, context={"device": {"id": "dev-real"}}))
    _land(ch, events)
    got = ch.query(f"SELECT id_type, id_value FROM {ch.database}.anonymous_profiles ORDER BY id_type")[1]
    assert [tuple(r) for r in got] == [("anonymous_id", "c-real"), ("device_id", "dev-real")]
    assert ch.scalar(f"SELECT count() FROM {ch.database}.events_store") == len(events)  # the events still land


def test_a_retried_block_is_counted_once(ch) -> None:
    now = datetime.now(UTC)
    lines = [orjson.dumps(_event(f"r{i}", "c-retry", now)) for i in range(5)]
    ch.insert_json_lines("events_landing", lines, dedup_token="topic|0:0-4")
    ch.insert_json_lines("events_landing", lines, dedup_token="topic|0:0-4")  # the sink's retry after a timeout
    events = ch.scalar(f"SELECT events FROM {ch.database}.anonymous_profiles WHERE id_value = 'c-retry'")
    assert events == 5


def test_a_later_event_without_device_or_location_keeps_the_latest_known_values(ch) -> None:
    """The DMP fields take the latest non-empty value: a server-side track after a browser page wipes nothing."""
    now = datetime.now(UTC)
    browser = {"ua": {"device_type": "mobile", "os": "iOS", "browser": "Mobile Safari"}, "location": {"country": "fr"}}
    _land(ch, [_event("k1", "c-keep", now - timedelta(minutes=1), context=browser)])
    _land(ch, [_event("k2", "c-keep", now, type="track", event="Signed Up", context={"library": {"name": "x"}})])
    got = ch.query(
        f"SELECT device_type, os, browser, country FROM {ch.database}.anonymous_profiles WHERE id_value = 'c-keep'"
    )[1]
    assert [tuple(r) for r in got] == [("mobile", "iOS", "Mobile Safari", "FR")]


def test_the_country_of_the_client_ip_when_the_context_gives_none(ch) -> None:
    """The collector's context.geo.country stands in when there is neither a location nor a locale; the IP itself
    never reaches the DMP side."""
    now = datetime.now(UTC)
    _land(ch, [_event("g1", "c-geo", now, context={"ip": "81.2.69.160", "geo": {"country": "GB"}})])
    cols, rows = ch.query(f"SELECT * FROM {ch.database}.anonymous_profiles WHERE id_value = 'c-geo'")
    (row,) = [dict(zip(cols, r, strict=True)) for r in rows]
    assert row["country"] == "GB" and "81.2.69.160" not in repr(row)


def test_an_event_redelivered_in_other_blocks_is_counted_once(ch) -> None:
    """A sink that re-reads from its committed offsets cuts its blocks elsewhere (other tokens), and an SDK that
    lost an answer sends its events again: the DMP counts equal the cookie's rows in the events view."""
    now = datetime.now(UTC)
    ctx = {"device": {"id": "dev-re"}, "ua": {"device_type": "desktop", "os": "Linux", "browser": "Firefox"}}
    events = [
        _event("v0", "c-re", now, properties={"path": "/pricing"}, context=ctx),
        _event("v1", "c-re", now, properties={"path": "/pricing"}, context=ctx),
        _event("v2", "c-re", now, type="screen", name="Cart", context=ctx),
        _event("v3", "c-re", now, type="track", event="Product Viewed", properties={"category": "shoes"}, context=ctx),
        _event("v4", "c-re", now, type="track", event="Product Viewed", properties={"category": "shoes"}, context=ctx),
    ]
    lines = [orjson.dumps(e) for e in events]
    ch.insert_json_lines("events_landing", lines[:3], dedup_token="stitched|0:0-2")
    ch.insert_json_lines("events_landing", lines[3:], dedup_token="stitched|0:3-4")
    ch.insert_json_lines("events_landing", lines[1:], dedup_token="stitched|0:1-4")  # the re-read, cut elsewhere
    ch.insert_json_lines("events_landing", [lines[0], lines[3]], dedup_token="stitched|1:7-8")  # sent twice
    assert ch.scalar(f"SELECT count() FROM {ch.database}.events WHERE anonymous_id = 'c-re'") == 5
    cols, rows = ch.query(
        f"SELECT * FROM {ch.database}.anonymous_profiles WHERE id_value IN ('c-re', 'dev-re') ORDER BY id_type"
    )
    for row in rows:
        p = dict(zip(cols, row, strict=True))
        assert (p["events"], p["pages"], p["screens"]) == (5, 2, 1), p
        assert p["event_counts"] == {"Cart": 1, "Product Viewed": 2}, p
        assert (p["page_counts"], p["category_counts"]) == ({"/pricing": 2}, {"shoes": 2}), p
        assert (p["device_type"], p["os"], p["browser"]) == ("desktop", "Linux", "Firefox")
    assert len(rows) == 2


def test_the_rebuilt_store_counts_the_history_once(ch) -> None:
    """The migration that made the counts exact rebuilds the store from the deduplicated events: what was
    landed before it (redeliveries included) is counted once, as it would be now."""
    now = datetime.now(UTC)
    lines = [orjson.dumps(_event(f"h{i}", "c-history", now, properties={"path": f"/p{i % 2}"})) for i in range(4)]
    ch.insert_json_lines("events_landing", lines, dedup_token="stitched|0:0-3")
    ch.insert_json_lines("events_landing", lines[2:], dedup_token="stitched|0:2-3b")
    rebuild = ("013_anonymous_counted_once.sql", "022_anonymous_advertising_consent.sql")  # the store, its consent
    for stmt in (s for _, name, sql in migration_files() if name in rebuild for s in statements(sql, db=ch.database)):
        ch.command(stmt)
    assert apply_views(ch) == ["anonymous_profiles_landing_mv.sql"]  # made over the empty store, filled from history
    query = f"SELECT events, pages, page_counts FROM {ch.database}.anonymous_profiles WHERE id_value = 'c-history'"
    assert ch.query(query)[1] == [(4, 4, {"/p0": 2, "/p1": 2})]
