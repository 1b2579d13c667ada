"""Edge limits found by the collector's end-to-end fuzzing, pinned as fast unit tests: nesting depth, timestamps
outside what the warehouse can hold, clock-skew arithmetic on nonsense clocks, and the 413 for a large event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from schemas.enrich import enrich
from schemas.errors import EventError
from schemas.segment import MAX_DEPTH, EventTooLarge, parse_batch, parse_event, parse_timestamp
from streams.ingest import UnreadableFile, content_message_id, read_rows

RECEIVED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_nesting_up_to_the_limit_is_accepted_and_deeper_is_refused_by_field() -> None:
    ok = {"type": "track", "event": "x", "anonymousId": "a", "properties": nested(MAX_DEPTH - 1)}
    event = parse_event(ok)
    assert orjson.dumps(event.to_segment())  # and it can be re-encoded downstream
    with pytest.raises(EventError) as info:
        parse_event({**ok, "properties": nested(MAX_DEPTH)})
    assert [e.loc for e in info.value.errors] == ["properties"]
    assert not isinstance(info.value, EventTooLarge)


def test_nesting_deeper_than_orjson_can_encode_is_an_error_not_a_crash() -> None:
    payload = json.loads(json.dumps({"type": "track", "event": "x", "anonymousId": "a", "context": nested(900)}))
    with pytest.raises(EventError) as info:
        parse_event(payload)
    assert [e.loc for e in info.value.errors] == ["context"]
    good, bad = parse_batch({"batch": [payload, {"type": "track", "event": "y", "anonymousId": "a"}]})
    assert len(good) == 1 and [e.loc for e in bad[0].errors] == ["batch[0].context"]
    with pytest.raises(EventError) as info:
        parse_batch({"batch": [], "context": nested(MAX_DEPTH)})
    assert [e.loc for e in info.value.errors] == ["context"]


def test_large_event_is_event_too_large() -> None:
    with pytest.raises(EventTooLarge):
        parse_event({"type": "track", "event": "x", "anonymousId": "a", "properties": {"b": "x" * 40_000}})


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00Z", "1899-12-31T23:59:59Z", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00+01:00"]
)
def test_timestamps_outside_the_warehouse_range_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_timestamp(value)
    with pytest.raises(EventError) as info:
        parse_event({"type": "track", "event": "x", "anonymousId": "a", "timestamp": value})
    assert [e.loc for e in info.value.errors] == ["timestamp"]


def test_timestamps_at_the_edges_of_the_range_are_kept() -> None:
    assert parse_timestamp("1900-01-01T00:00:00Z") == datetime(1900, 1, 1, tzinfo=UTC)
    assert parse_timestamp("2261-12-31T23:59:59Z") is not None


@pytest.mark.parametrize(
    ("original", "sent"),
    [
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),  # overflow
        ("1900-01-01T00:00:00Z", "2261-12-31T00:00:00Z"),  # a "correction" of centuries
    ],
)
def test_skew_correction_on_nonsense_clocks_falls_back_to_received_at(original: str, sent: str) -> None:
    out = enrich(
        {"type": "track", "event": "x", "anonymousId": "a", "originalTimestamp": original, "sentAt": sent},
        received_at=RECEIVED,
        client_ip=None,
        channel="online",
        source_id="web",
    )
    assert out["timestamp"] == "2024-05-01T12:00:00.000Z"
    assert out["originalTimestamp"] == original


def test_content_message_id_is_deterministic() -> None:
    a = {"type": "track", "event": "x", "properties": {"b": 1, "a": 2}}
    b = {"properties": {"a": 2, "b": 1}, "event": "x", "type": "track"}
    assert content_message_id(a) == content_message_id(b)
    assert content_message_id(a) != content_message_id({**a, "event": "y"})


def test_csv_errors_reject_the_row_and_keep_going(tmp_path: Path) -> None:
    import csv

    file = tmp_path / "r.csv"
    limit = csv.field_size_limit()
    file.write_text(f"receipt_id,email\nR1,a@b.c\nR2,{'x' * (limit + 10)}\nR3,c@d.e\n")
    rows = list(read_rows(file))
    assert [(n, r["receipt_id"] if r else None, bool(e)) for n, r, e in rows] == [
        (2, "R1", False),
        (3, None, True),
        (4, "R3", False),
    ]


def test_non_utf8_csv_is_refused_whole(tmp_path: Path) -> None:
    file = tmp_path / "latin1.csv"
    file.write_bytes("receipt_id,email\nR1,jos\xe9@example.com\n".encode("latin-1"))
    with pytest.raises(UnreadableFile, match="not UTF-8"):
        list(read_rows(file))
