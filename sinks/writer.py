"""Kafka -> ClickHouse batch sink.

Batches by size and time; inserts one block per table with a deduplication token derived from the exact
offsets in the block; commits Kafka offsets only after the insert succeeded. If ClickHouse is unavailable the
sink keeps its batch, backs off and retries (consuming nothing more meanwhile), so after recovery nothing is
missing. A block read again after a restart is dropped by the engine's insert deduplication, and a redelivered
event collapses in the ReplacingMergeTree behind the analysts' views (the DMP side counts distinct events), so
nothing is doubled.

A block whose insert failed is retried with the engine's deduplication off. The engine records a block's id in
its deduplication log before it renames the block's part into place, and a failure between the two (a disk
refusing the rename, a store going away) leaves the id without the part: a retry under that id would be
dropped as a duplicate of data that never landed. The retry may write rows the failed insert did store (its
outcome is unknown); those copies collapse like any redelivery.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, TopicPartition

from sinks.clickhouse import ClickHouse
from sinks.metrics import SINK_INSERT_SECONDS, SINK_ROWS
from sinks.rows import RowFn
from streams.metrics import STATS_INTERVAL_MS, lag_reporter

log = logging.getLogger(__name__)

SESSION_TIMEOUT_MS = 10_000  # a dead sink's partitions move to another (or its restart) after this


class Batch:
    """The records of one insert, kept as the insert needs them: the values per topic in consumption order, and
    per (topic, partition) the lowest and highest offset (for the deduplication token and the commit). Filled in
    the reader's loop, so no object is built per record and the writer does not walk the records again."""

    __slots__ = ("rows", "spans", "values")

    def __init__(self) -> None:
        self.values: dict[str, list[bytes]] = defaultdict(list)
        self.spans: dict[tuple[str, int], list[int]] = {}
        self.rows = 0

    def add(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self.values[topic].append(value)
        span = self.spans.get((topic, partition))
        if span is None:
            self.spans[(topic, partition)] = [offset, offset]
        elif offset > span[1]:
            span[1] = offset
        elif offset < span[0]:  # only after a rebalance re-delivered part of a partition
            span[0] = offset
        self.rows += 1

    def token(self, topic: str) -> str:
        """Names exactly these offsets of ``topic``: a retried insert of the same batch carries the same token."""
        spans = sorted((p, lo_hi) for (t, p), lo_hi in self.spans.items() if t == topic)
        return topic + "|" + ",".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in spans)

    def next_offsets(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, hi + 1) for (t, p), (_lo, hi) in self.spans.items()]


@dataclass(frozen=True)
class Route:
    """Where a topic's records go: rows built by `row` into `columns`, or, with `json=True`, the records as
    they are into a landing table whose materialized view maps them (the engine parses the JSON)."""

    table: str
    columns: tuple[str, ...] = ()
    row: RowFn | None = None
    json: bool = False


class KafkaSink:
    """A pipeline: the reader thread consumes and fills the next batch while ``writers`` threads insert earlier
    ones, each through its own client (the engine releases the GIL during an insert, and one insert keeps about
    one core busy, so two writers use both cores of a small machine). At most ``writers`` batches wait, so a
    stalled ClickHouse stops consumption instead of filling memory. Offsets are committed by the reader (a Kafka
    consumer belongs to one thread) in batch order: a batch's offsets only once it and every earlier batch are
    written, so a crash never skips an unwritten batch."""

    def __init__(
        self,
        ch: ClickHouse,
        bootstrap: str,
        group_id: str,
        routes: dict[str, Route],
        batch_rows: int = 50_000,
        flush_s: float = 0.25,
        writers: int = 2,
    ) -> None:
        self.routes = routes
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.rows_written = 0
        self.first_read_at: float | None = None  # time.perf_counter() when the first records arrived
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                "fetch.min.bytes": 1,
                # Bigger fetches: with the default 1 MB per partition the reader falls behind what the writers
                # insert (README, "Why these settings").
                "max.partition.fetch.bytes": 8 * 1024 * 1024,
                "fetch.max.bytes": 64 * 1024 * 1024,
                # Once a partition's prefetch queue is above queued.min.messages / queued.max.messages.kbytes,
                # librdkafka stops fetching it for fetch.queue.backoff.ms, default 1 s (librdkafka #2879). With
                # 8 MB fetches that pause comes every few fetches and the writers wait for the reader; a short
                # back-off keeps it fetching.
                "fetch.queue.backoff.ms": 20,
                "max.poll.interval.ms": 600_000,
                "statistics.interval.ms": STATS_INTERVAL_MS,
                "stats_cb": lag_reporter(group_id),
                # A sink that was killed keeps its partitions until its session times out: with the default
                # (45 s) a restarted `cdp run` wrote nothing to ClickHouse for that long. Heartbeats come from
                # librdkafka's own thread, so a long insert never makes a live sink miss them.
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 5,
            }
        )
        self._pending: queue.Queue[tuple[int, Batch] | None] = queue.Queue(maxsize=writers)
        self._written: queue.Queue[tuple[int, list[TopicPartition] | None]] = queue.Queue()
        self._idle_writers = 0
        self._idle_lock = threading.Lock()
        self._next_seq = 0  # sequence number of the next batch handed over
        self._commit_seq = 0  # the next batch whose offsets may be committed
        self._done: dict[int, list[TopicPartition] | None] = {}
        self._thread = threading.Thread(target=self._read, name=f"sink-{group_id}", daemon=True)
        # The writers' own clients: queries on `ch` (the API, audience evaluation) never wait behind an insert.
        self._clients = [ch.sibling() for _ in range(max(1, writers))]
        self._writers = [
            threading.Thread(target=self._write_loop, args=(client,), name=f"sink-{group_id}-writer{i}", daemon=True)
            for i, client in enumerate(self._clients)
        ]

    def start(self) -> KafkaSink:
        self._consumer.subscribe(list(self.routes))
        for writer in self._writers:
            writer.start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Flush the open batch, commit, leave the group."""
        self._stop.set()
        self._thread.join(timeout)

    def _read(self) -> None:
        batch = Batch()
        opened = time.monotonic()
        try:
            while True:
                self._commit_written()
                stopping = self._stop.is_set()
                if not stopping:
                    want = self.batch_rows - batch.rows
                    msgs = self._consumer.consume(num_messages=min(want, 5000), timeout=0.05)
                    if msgs and self.first_read_at is None:
                        self.first_read_at = time.perf_counter()
                    add = batch.add
                    for m in msgs:
                        if (err := m.error()) is not None:  # no partition-EOF events: switched off above
                            log.warning("sink consume error: %s", err)
                            continue
                        add(m.topic() or "", m.partition() or 0, m.offset() or 0, m.value() or b"")
                    if not batch.rows:
                        opened = time.monotonic()
                # The time bound is for latency when records trickle in. Under a backlog every writer is busy, and
                # a batch cut by the clock only makes smaller blocks (more parts to merge, more engine work per
                # row): the batch keeps growing until it is full or a writer is free to take it.
                due = batch.rows >= self.batch_rows or (
                    time.monotonic() - opened >= self.flush_s and self._writer_free()
                )
                if batch.rows and (due or stopping):
                    self._hand_over(batch)
                    batch = Batch()
                    opened = time.monotonic()
                if stopping:
                    break
        finally:
            for _ in self._writers:
                self._pending.put(None)  # each writer finishes what it holds, then ends
            for writer in self._writers:
                writer.join()
            self._commit_written()
            self._consumer.close()
            for client in self._clients:
                client.close()

    def _writer_free(self) -> bool:
        with self._idle_lock:
            return self._idle_writers > self._pending.qsize()

    def _hand_over(self, batch: Batch) -> None:
        """Queue a batch for the writer; while the writer is busy keep committing, and keep the group membership
        alive (a consumer that does not poll for max.poll.interval.ms is thrown out of its group)."""
        item = (self._next_seq, batch)
        self._next_seq += 1
        while True:
            try:
                self._pending.put(item, timeout=0.05)
                return
            except queue.Full:
                self._commit_written()

    def _commit_written(self) -> None:
        """Commit, in batch order, the offsets of the written prefix of batches. A batch that was abandoned at
        shutdown (None) stops the prefix for good: nothing after it is committed, so it is read again."""
        while True:
            try:
                seq, offsets = self._written.get_nowait()
            except queue.Empty:
                break
            self._done[seq] = offsets
        ready: list[TopicPartition] = []
        while self._commit_seq in self._done and self._done[self._commit_seq] is not None:
            ready.extend(self._done.pop(self._commit_seq) or [])
            self._commit_seq += 1
        if not ready:
            return
        latest: dict[tuple[str, int], int] = {}
        for tp in ready:
            latest[(tp.topic, tp.partition)] = max(latest.get((tp.topic, tp.partition), -1), tp.offset)
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in latest.items()], asynchronous=False)
        except Exception as exc:  # the batches are in ClickHouse; a lost commit means a redelivery, collapsed there
            log.warning("sink commit failed (%s); the batches will be read again and deduplicated", exc)

    def _write_loop(self, client: ClickHouse) -> None:
        while True:
            with self._idle_lock:
                self._idle_writers += 1
            item = self._pending.get()
            with self._idle_lock:
                self._idle_writers -= 1
            if item is None:
                break
            seq, batch = item
            written = self._write_until_done(client, batch)
            self._written.put((seq, batch.next_offsets() if written else None))

    def _write_until_done(self, client: ClickHouse, batch: Batch) -> bool:
        delay = 0.2
        deduplicate = True
        while True:
            try:
                self._write(client, batch, deduplicate)
                return True
            except Exception as exc:  # ClickHouse down: keep the batch, retry
                log.warning("sink write failed (%s); retrying in %.1f s", exc, delay)
                deduplicate = False  # the failed insert may have left its block's id without its part
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                if self._stop.is_set() and delay >= 5.0:
                    # On shutdown do not retry forever: uncommitted offsets are re-read after restart.
                    log.error("sink stopping with an unwritten batch; it will be re-read on restart")
                    return False

    def _write(self, client: ClickHouse, batch: Batch, deduplicate: bool = True) -> None:
        for topic, values in batch.values.items():
            route = self.routes[topic]
            token = batch.token(topic)
            if route.json:
                started = time.perf_counter()
                client.insert_json_lines(route.table, values, dedup_token=token, deduplicate=deduplicate)
                self._count(route.table, len(values), started)
                continue
            assert route.row is not None
            rows = []
            for i, value in enumerate(values):
                if not value:  # a tombstone (an erased identifier in the identities topic): nothing to insert
                    continue
                try:
                    rows.append(route.row(orjson.loads(value)))
                except Exception as exc:  # a malformed record must not stall the sink forever
                    log.error("dropping unreadable record %d of a batch of %s: %s", i, topic, exc)
            if rows:
                started = time.perf_counter()
                client.insert(route.table, rows, route.columns, dedup_token=token, deduplicate=deduplicate)
                self._count(route.table, len(rows), started)

    def _count(self, table: str, rows: int, started: float) -> None:
        SINK_INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
        SINK_ROWS.labels(table).inc(rows)
        with self._count_lock:  # two writers add to it
            self.rows_written += rows
