"""When the sink cuts a batch (unit, no broker): by time only while a writer is free to take it, by size always."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from confluent_kafka import TopicPartition

from sinks.writer import KafkaSink, Route


class Message:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return b"{}"


class TrickleConsumer:
    """Hands out `per_call` records per consume() call, one call every `every_s` seconds, up to `total`."""

    def __init__(self, total: int, per_call: int, every_s: float) -> None:
        self.total, self.per_call, self.every_s = total, per_call, every_s
        self.next = 0

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        time.sleep(self.every_s)
        n = min(num_messages, self.per_call, self.total - self.next)
        out = [Message(o) for o in range(self.next, self.next + n)]
        self.next += n
        return out

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        pass

    def close(self) -> None:
        pass


class GatedClient:
    """Records the size of every insert; the first insert waits until the gate opens (a slow ClickHouse)."""

    def __init__(self, sizes: list[int], gate: threading.Event) -> None:
        self.sizes, self.gate = sizes, gate

    def sibling(self) -> GatedClient:
        return self

    def insert_json_lines(
        self, table: str, lines: Sequence[bytes], dedup_token: str | None = None, *, deduplicate: bool = True
    ) -> None:
        if not self.sizes:
            self.gate.wait(10)
        self.sizes.append(len(lines))

    def close(self) -> None:
        pass


def _run(consumer: TrickleConsumer, gate: threading.Event, batch_rows: int, release_after_s: float) -> list[int]:
    sizes: list[int] = []
    client = GatedClient(sizes, gate)
    sink = KafkaSink(
        client,  # type: ignore[arg-type]
        "127.0.0.1:1",
        "g",
        {"t": Route("events_landing", json=True)},
        batch_rows=batch_rows,
        flush_s=0.05,
        writers=1,
    )
    sink._consumer = consumer  # type: ignore[assignment]
    sink._writers[0].start()
    sink._thread.start()
    time.sleep(release_after_s)
    gate.set()
    deadline = time.monotonic() + 10
    while sink.rows_written < consumer.total and time.monotonic() < deadline:
        time.sleep(0.01)
    sink.stop()
    assert sum(sizes) == consumer.total
    return sizes


def test_a_busy_writer_lets_the_batch_grow_to_full_size() -> None:
    # 100 records every 10 ms: 0.05 s of flush time is ~500 records, a batch is 1,000. The only writer is stuck
    # in its first insert for 0.6 s; meanwhile the reader must fill whole batches instead of cutting one every
    # 0.05 s (each small block is one more part for the engine to write and merge).
    sizes = _run(TrickleConsumer(total=3_000, per_call=100, every_s=0.01), threading.Event(), 1_000, 0.6)
    assert all(size == 1_000 for size in sizes[1:3]), sizes


def test_a_free_writer_gets_a_partial_batch_after_the_flush_time() -> None:
    # A trickle into an idle sink: the records go out after about flush_s, not when 1,000 have arrived.
    gate = threading.Event()
    gate.set()
    sizes = _run(TrickleConsumer(total=300, per_call=10, every_s=0.01), gate, 1_000, 0.0)
    assert len(sizes) > 1 and max(sizes) < 300, sizes
