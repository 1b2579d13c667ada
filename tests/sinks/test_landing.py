"""The events landing table: the engine parses the stitched topic's JSON and the view maps it into events_store."""

from datetime import UTC, datetime

import orjson

from sinks.rows import EVENT_COLUMNS

# Received now: an anonymous cookie's event received longer ago than its retention (018_retention.sql) is dropped
# as it is inserted.
RECEIVED = datetime.now(UTC).isoformat()


def _line(mid: str, **extra) -> bytes:
    return orjson.dumps(
        {
            "messageId": mid,
            "type": "track",
            "event": "E",
            "anonymousId": "a",
            "channel": "online",
            "sourceId": "web",
            "profileId": "p",
            "identityKey": "anonymous_id:a",
            "timestamp": "2026-01-02T03:04:05.678Z",
            "receivedAt": RECEIVED,
            "properties": {"revenue": 10, "items": [1, 2]},
            "context": {"ip": "x"},
            **extra,
        }
    )


def test_records_map_like_the_row_builder(ch) -> None:
    ch.insert_json_lines(
        "events_landing",
        [
            _line("m1"),
            _line("m2", type="page", event=None, name="Pricing", anonymousId=42, traits={"plan": "pro"}),
            _line("m3", timestamp=None, unknownField={"x": 1}),
        ],
    )
    cols, rows = ch.query(f"SELECT {', '.join(EVENT_COLUMNS)} FROM {ch.database}.events ORDER BY message_id")
    got = [dict(zip(cols, r, strict=True)) for r in rows]
    assert [g["message_id"] for g in got] == ["m1", "m2", "m3"]
    assert got[0]["event"] == "E" and orjson.loads(got[0]["properties"]) == {"revenue": 10, "items": [1, 2]}
    assert got[0]["timestamp"].isoformat().startswith("2026-01-02T03:04:05.678")
    assert (got[1]["type"], got[1]["event"], got[1]["anonymous_id"]) == ("page", "Pricing", "42")
    assert orjson.loads(got[1]["traits"]) == {"plan": "pro"} and got[0]["traits"] == "{}"
    assert got[2]["timestamp"] == got[2]["received_at"]  # no timestamp: the receive time stands in


def test_a_retried_block_is_stored_once(ch) -> None:
    lines = [_line(f"r{i}") for i in range(500)]
    ch.insert_json_lines("events_landing", lines, dedup_token="topic|0:0-499")
    ch.insert_json_lines("events_landing", lines, dedup_token="topic|0:0-499")  # forced retry
    assert ch.scalar(f"SELECT count() FROM {ch.database}.events_store") == 500


def test_the_latest_source_version_wins_whatever_the_arrival_order(ch) -> None:
    """A pull source's new version of an event (same messageId) replaces the old one even when the sink's
    writers insert the newer block first."""
    newer = _line("o1", properties={"revenue": 99}, sourceVersion="2026-01-02T10:00:00.002Z")
    older = _line("o1", properties={"revenue": 10}, sourceVersion="2026-01-02T10:00:00.001Z")
    ch.insert_json_lines("events_landing", [newer], dedup_token="t|0:1-1")
    ch.insert_json_lines("events_landing", [older], dedup_token="t|0:0-0")
    assert ch.scalar(f"SELECT JSONExtractFloat(properties, 'revenue') FROM {ch.database}.events") == 99
    # Events without a source version (SDK retries, identical copies) keep arrival time as their version.
    ch.insert_json_lines("events_landing", [_line("s1"), _line("s1")])
    assert ch.scalar(f"SELECT count() FROM {ch.database}.events WHERE message_id = 's1'") == 1
