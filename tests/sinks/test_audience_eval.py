"""The audience evaluator on chDB: a member erased by a regulation is not named again by an `exited` change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import orjson

from sinks.audience_eval import MEMBER_COLUMNS, AudienceEvaluator
from sinks.clickhouse import ClickHouse
from streams.audiences import AudienceDefinitions
from streams.producer import AsyncProducer
from tests.api.routes.fixtures import NEVER_STARTED, RecordingProducer


def test_an_erased_member_gets_no_exited_row_and_a_member_who_left_does(ch: ClickHouse) -> None:
    definitions = AudienceDefinitions(NEVER_STARTED, "t.audiences")
    rule = {"computed": "events", "op": "gte", "value": 1}  # nobody has events here: every member leaves
    definitions.apply(
        "aud_e", orjson.dumps({"id": "aud_e", "name": "e", "scope": "profile", "rule": rule, "created_at_ms": 1})
    )
    entered = datetime(2026, 3, 1, tzinfo=UTC)
    ch.insert(
        "audience_members",
        [("aud_e", p, "profile_id", "entered", entered) for p in ("p-left", "p-gone")],
        MEMBER_COLUMNS,
    )
    producer = RecordingProducer()
    evaluator = AudienceEvaluator(ch, cast(AsyncProducer, producer), definitions, "t.audience.changes", lambda: 0)
    evaluator.members["aud_e"] = {"p-left", "p-gone"}  # as read at start, before the regulation
    ch.command(
        f"ALTER TABLE {ch.database}.audience_members DELETE WHERE member = 'p-gone'", settings={"mutations_sync": 2}
    )

    assert evaluator.refresh_definitions() == 1  # the new definition's full evaluation

    _, rows = ch.query(f"SELECT member, status FROM {ch.database}.audience_members ORDER BY member, status")
    assert rows == [("p-left", "entered"), ("p-left", "exited")]
    assert [k for _, k, _ in producer.sent] == [b"aud_e|p-left"]
    assert evaluator.members["aud_e"] == set()
