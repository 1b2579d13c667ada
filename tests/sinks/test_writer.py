"""The Kafka -> ClickHouse sink against the real broker and the real engine."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from sinks.clickhouse import ClickHouse
from sinks.writer import Batch, KafkaSink, Route
from streams.producer import AsyncProducer
from tests.sinks.fixtures import consented

pytestmark = pytest.mark.e2e


def _topic(bootstrap: str) -> str:
    name = f"sinktest-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, 3, 1)])[name].result(30)
    return name


def _produce(bootstrap: str, topic: str, ids: list[str]) -> None:
    p = AsyncProducer(bootstrap)
    now = datetime.now(UTC).isoformat()
    p.send_sync(
        [
            (
                topic,
                i.encode(),
                orjson.dumps(
                    {
                        "messageId": i,
                        "type": "track",
                        "event": "Sunk",
                        "anonymousId": "a",
                        "timestamp": now,  # recent: the DMP view hides cookies past their retention
                        "receivedAt": now,
                        "context": consented(),  # the DMP side counts a consenting cookie's events
                    }
                ),
            )
            for i in ids
        ]
    )
    p.close()


def _wait_count(ch, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ch.scalar(f"SELECT count() FROM {ch.database}.events") == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"count {ch.scalar(f'SELECT count() FROM {ch.database}.events')} != {expected}")


def _sink(ch, bootstrap: str, topic: str, group: str) -> KafkaSink:
    return KafkaSink(
        ch, bootstrap, group, {topic: Route("events_landing", json=True)}, batch_rows=500, flush_s=0.1
    ).start()


def test_redelivery_and_retries_keep_counts_exact(kafka, ch) -> None:
    topic = _topic(kafka.bootstrap)
    ids = [f"r-{i}" for i in range(3000)]
    _produce(kafka.bootstrap, topic, ids)
    _produce(kafka.bootstrap, topic, ids[:700])  # the producer retried: same messageIds again
    sink = _sink(ch, kafka.bootstrap, topic, f"g-{uuid.uuid4().hex[:6]}")
    _wait_count(ch, 3000)
    sink.stop()
    # A whole redelivery of the topic (offsets lost, new consumer group) changes nothing visible.
    again = _sink(ch, kafka.bootstrap, topic, f"g-{uuid.uuid4().hex[:6]}")
    time.sleep(3)
    _wait_count(ch, 3000)
    again.stop()
    assert ch.scalar(f"SELECT uniqExact(message_id) FROM {ch.database}.events_store") == 3000
    # The DMP side too: every copy came back in other blocks than the first, and each event counts once.
    assert ch.scalar(f"SELECT events FROM {ch.database}.anonymous_profiles WHERE id_value = 'a'") == 3000


def test_clickhouse_outage_mid_stream_loses_and_doubles_nothing(kafka, ch) -> None:
    topic = _topic(kafka.bootstrap)
    sink = _sink(ch, kafka.bootstrap, topic, f"g-{uuid.uuid4().hex[:6]}")
    _produce(kafka.bootstrap, topic, [f"o-{i}" for i in range(2000)])
    _wait_count(ch, 2000)
    ch.command(f"DETACH TABLE {ch.database}.events_store")  # the table is gone for 10 s
    _produce(kafka.bootstrap, topic, [f"o-{i}" for i in range(2000, 5000)])
    time.sleep(10)
    ch.command(f"ATTACH TABLE {ch.database}.events_store")
    _wait_count(ch, 5000)
    sink.stop()
    assert ch.scalar(f"SELECT uniqExact(message_id) FROM {ch.database}.events_store") == 5000


class _IdWithoutPart:
    """A client whose first insert fails after the engine has recorded the block's id, as when the rename of
    the block's part fails: here a decoy row under the same token records the id, then the insert raises."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.failed = False

    def insert_json_lines(self, table: str, lines: list[bytes], dedup_token: str | None = None, **kw: bool) -> None:
        if not self.failed:
            self.failed = True
            decoy = orjson.loads(lines[0]) | {"messageId": "decoy"}
            self.ch.insert_json_lines(table, [orjson.dumps(decoy)], dedup_token=dedup_token)
            raise OSError("rename of the part failed")
        self.ch.insert_json_lines(table, lines, dedup_token=dedup_token, **kw)


def test_a_block_whose_insert_failed_is_not_dropped_as_its_own_duplicate(kafka, ch, monkeypatch) -> None:
    monkeypatch.setattr("sinks.writer.time.sleep", lambda s: None)
    now = datetime.now(UTC).isoformat()
    batch = Batch()
    for i in range(5):
        event = {"messageId": f"f-{i}", "type": "track", "event": "E", "timestamp": now, "receivedAt": now}
        batch.add("stitched", 0, i, orjson.dumps(event))
    sink = KafkaSink(ch, kafka.bootstrap, f"g-{uuid.uuid4().hex[:6]}", {"stitched": Route("events_landing", json=True)})
    try:
        assert sink._write_until_done(_IdWithoutPart(ch), batch)  # type: ignore[arg-type]
    finally:  # never started: only its consumer and clients to close
        sink._consumer.close()
        for client in sink._clients:
            client.close()
    stored = {r[0] for r in ch.query(f"SELECT message_id FROM {ch.database}.events")[1]}
    assert {f"f-{i}" for i in range(5)} <= stored
