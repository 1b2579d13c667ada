"""Durable producing: the collector answers 200 only after the broker acknowledged every event.

confluent-kafka reports delivery only from ``poll()`` (confluent-kafka-python #417, #750), so a background
thread polls and resolves asyncio futures on the caller's loop. ``flush()`` returns the count still undelivered;
``close()`` checks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException, Producer

from streams.metrics import queue_full
from streams.partitioner import PARTITIONER

log = logging.getLogger(__name__)


Headers = list[tuple[str, str | bytes | None]]
Record = tuple[str, bytes | None, bytes | None] | tuple[str, bytes | None, bytes | None, Headers]
"""(topic, key, value) or (topic, key, value, headers): a record's own headers replace the call's ``headers``."""

CHECKED_HEADER: tuple[str, str | bytes | None] = ("cdp-checked", b"1")
"""On a raw event that passed the collector's (or the importer's) validation: the stitcher does not validate it
again. Records without it (any other producer may write the raw topics) are validated there."""


class ProduceTimeout(Exception):
    """The broker did not acknowledge in time; the caller answers 503 and the client retries."""


def producer_config(bootstrap: str, **extra: object) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        # Kafka's (and aiokafka's) murmur2, not librdkafka's CRC32 default: one key, one partition, whichever
        # client wrote it; the stitcher computes partitions with the same function (streams.partitioner).
        "partitioner": PARTITIONER,
        # Bounded: an event the broker never saw fails here rather than hanging forever in the queue.
        "message.timeout.ms": 30_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        **extra,
    }


class AsyncProducer:
    def __init__(self, bootstrap: str, **extra: object) -> None:
        self._producer = Producer(producer_config(bootstrap, **extra))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-producer-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        # This thread is the only one that serves delivery reports: if it died, every later request would wait
        # for acknowledgements that never come (503s forever). A failing callback is logged, not fatal.
        while not self._stop.is_set():
            try:
                self._producer.poll(0.05)
            except Exception:
                log.exception("error in a delivery callback")

    async def send_many(
        self,
        records: Iterable[Record],
        timeout: float,
        headers: Headers | None = None,
    ) -> None:
        """Produce records (value None: a tombstone), each with its own headers or else ``headers``, and wait until
        the broker acknowledged all of them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        batch = list(records)
        if not batch:
            return
        acks = _Acks(loop, len(batch))
        for record in batch:
            topic, key, value = record[0], record[1], record[2]
            own = record[3] if len(record) == 4 else headers
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, headers=own, on_delivery=acks)
                    break
                except BufferError:  # local queue full: back-pressure rather than drop, but only until the
                    queue_full("send_many")
                    # deadline: with the broker down the queue drains only as messages expire (message.timeout.ms),
                    # and the client must get its 503 within the bound, not hang.
                    if loop.time() >= deadline:
                        acks.future.cancel()  # late delivery reports of this request are not waited for
                        raise ProduceTimeout(f"producer queue full for {timeout:.1f} s") from None
                    await asyncio.sleep(0.01)
        try:
            await asyncio.wait_for(acks.future, max(0.0, deadline - loop.time()))
        except TimeoutError as exc:
            raise ProduceTimeout(f"broker did not acknowledge within {timeout:.1f} s") from exc

    def send_sync(
        self,
        records: Iterable[Record],
        timeout: float = 30.0,
        headers: Headers | None = None,
    ) -> None:
        """Blocking variant for CLIs (import, sources): produce, flush, and fail loudly on any loss."""
        errors: list[KafkaError] = []

        def cb(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                errors.append(err)

        for record in records:
            topic, key, value = record[0], record[1], record[2]
            own = record[3] if len(record) == 4 else headers
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, headers=own, on_delivery=cb)
                    break
                except BufferError:
                    queue_full("send_sync")
                    self._producer.poll(0.05)
        remaining = self._producer.flush(timeout)
        if remaining or errors:
            raise ProduceTimeout(f"{remaining} undelivered, {len(errors)} failed: {errors[:3]}")

    def close(self, timeout: float = 30.0) -> int:
        """Flush what was accepted; returns (and logs) how many messages were still undelivered."""
        remaining = self._producer.flush(timeout)
        self._stop.set()
        self._thread.join(timeout=2)
        if remaining:
            log.error("%d messages undelivered at producer close", remaining)
        return remaining


class _Acks:
    """The delivery reports of one request. Counted on the poll thread; the event loop is woken once, when the
    last report arrives (waking it per message cost a self-pipe write per event)."""

    __slots__ = ("error", "future", "loop", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop, pending: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.pending = pending
        self.error: KafkaError | None = None

    def __call__(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None and self.error is None:
            self.error = err
        self.pending -= 1
        if self.pending == 0:
            # RuntimeError: the loop is closed, so nobody is waiting for this answer any more.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(
                    _resolve, self.future, None if self.error is None else KafkaException(self.error)
                )


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)
