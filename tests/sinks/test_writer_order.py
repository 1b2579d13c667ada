"""The sink's writers finish batches out of order; offsets are committed in batch order only (unit, no broker)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from sinks.writer import KafkaSink, Route


class FakeClient:
    def sibling(self) -> FakeClient:
        return FakeClient()

    def close(self) -> None:
        pass


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[tuple[str, int], int]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})


def _sink() -> tuple[KafkaSink, FakeConsumer]:
    sink = KafkaSink(FakeClient(), "127.0.0.1:1", "g", {"t": Route("events_landing", json=True)})  # type: ignore[arg-type]
    fake = FakeConsumer()
    sink._consumer = fake  # type: ignore[assignment]
    return sink, fake


def _done(sink: KafkaSink, seq: int, offsets: dict[int, int] | None) -> None:
    value: Any = None if offsets is None else [TopicPartition("t", p, o) for p, o in offsets.items()]
    sink._written.put((seq, value))


def test_a_later_batch_waits_for_the_earlier_one() -> None:
    sink, fake = _sink()
    _done(sink, 1, {0: 20, 1: 7})  # batch 1 finished first
    sink._commit_written()
    assert fake.commits == []  # batch 0 is still being written: committing 1 would skip it after a crash
    _done(sink, 0, {0: 10, 2: 3})
    sink._commit_written()
    assert fake.commits == [{("t", 0): 20, ("t", 1): 7, ("t", 2): 3}]  # both, the highest offset per partition


def test_an_abandoned_batch_blocks_every_later_commit() -> None:
    sink, fake = _sink()
    _done(sink, 0, {0: 5})
    _done(sink, 1, None)  # not written (shutdown while ClickHouse was down)
    _done(sink, 2, {0: 30})
    sink._commit_written()
    assert fake.commits == [{("t", 0): 5}]
    sink._commit_written()
    assert fake.commits == [{("t", 0): 5}]  # batch 2's records are read again after a restart
