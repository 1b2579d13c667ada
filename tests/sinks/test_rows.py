from datetime import UTC, datetime

from schemas.timestamps import parse_ts
from sinks.audience_eval import diff_members
from sinks.rows import EVENT_COLUMNS, MERGE_COLUMNS, event_row, identity_row, merge_row


def test_event_row_maps_segment_fields() -> None:
    row = dict(
        zip(
            EVENT_COLUMNS,
            event_row(
                {
                    "messageId": "m1",
                    "type": "page",
                    "name": "Pricing",
                    "anonymousId": 42,
                    "channel": "online",
                    "sourceId": "web",
                    "profileId": "p1",
                    "identityKey": "anonymous_id:42",
                    "timestamp": "2026-01-02T03:04:05.678Z",
                    "receivedAt": "2026-01-02T03:04:06Z",
                    "properties": {"path": "/pricing"},
                    "context": {},
                }
            ),
            strict=True,
        )
    )
    assert row["event"] == "Pricing"  # page/screen names land in `event`
    assert row["anonymous_id"] == "42"
    assert row["timestamp"] == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert row["properties"] == '{"path":"/pricing"}' and row["context"] == "{}" and row["traits"] == "{}"


def test_parse_ts_accepts_iso_and_epoch_ms() -> None:
    assert parse_ts(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_ts("2026-01-02T03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # naive is UTC


def test_identity_row_keeps_the_version() -> None:
    row = identity_row(
        {
            "id_type": "email",
            "id_value": "a@b.c",
            "profile_id": "p",
            "first_seen_ms": 0,
            "updated_ms": 1000,
            "version": 7,
        }
    )
    assert row[:3] == ("email", "a@b.c", "p") and row[-1] == 7


def test_diff_members_reports_entries_and_exits() -> None:
    at = datetime.now(UTC)
    changes = diff_members(
        "aud", "anonymous", {"anonymous_id:a", "device_id:d"}, {"anonymous_id:a", "anonymous_id:b"}, at
    )
    assert changes == [
        ("aud", "anonymous_id:b", "anonymous_id", "entered", at),
        ("aud", "device_id:d", "device_id", "exited", at),
    ]
    assert diff_members("aud", "profile", {"p1"}, {"p1"}, at) == []
    assert diff_members("aud", "profile", set(), {"p2"}, at)[0][2] == "profile_id"


def test_merge_row_keeps_when_it_merged_and_when_its_event_happened() -> None:
    row = dict(
        zip(
            MERGE_COLUMNS,
            merge_row({"from_profile": "a", "into_profile": "b", "ts_ms": 5, "event_ms": 0, "merged_ms": 1000}),
            strict=True,
        )
    )
    assert row["merged_at"] == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert row["event_time"] == datetime(1970, 1, 1, tzinfo=UTC)
    older = merge_row({"from_profile": "a", "into_profile": "b", "ts_ms": 0})  # a record written before merged_ms
    assert older[3] == older[4]
