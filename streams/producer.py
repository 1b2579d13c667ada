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

log = logging.getLogger(__name__)


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

    async def send_many(self, records: Iterable[tuple[str, bytes | None, bytes | None]], timeout: float) -> None:
        """Produce (topic, key, value) records (value None: a tombstone) and wait until the broker acknowledged
        all of them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        futures: list[asyncio.Future[None]] = []

        def make_cb(fut: asyncio.Future[None]):  # one closure per record: delivery runs on the poll thread
            def cb(err: KafkaError | None, _msg: object) -> None:
                # RuntimeError: the loop is closed, so nobody is waiting for this answer any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, fut, None if err is None else KafkaException(err))

            return cb

        for topic, key, value in records:
            fut: asyncio.Future[None] = loop.create_future()
            futures.append(fut)
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, on_delivery=make_cb(fut))
                    break
                except BufferError:  # local queue full: back-pressure rather than drop, but only until the
                    # deadline: with the broker down the queue drains only as messages expire (message.timeout.ms),
                    # and the client must get its 503 within the bound, not hang.
                    if loop.time() >= deadline:
                        for pending in futures:  # their late delivery reports are not waited for
                            pending.cancel()
                        raise ProduceTimeout(f"producer queue full for {timeout:.1f} s") from None
                    await asyncio.sleep(0.01)
        if not futures:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*futures), max(0.0, deadline - loop.time()))
        except TimeoutError as exc:
            raise ProduceTimeout(f"broker did not acknowledge within {timeout:.1f} s") from exc

    def send_sync(self, records: Iterable[tuple[str, bytes | None, bytes]], timeout: float = 30.0) -> None:
        """Blocking variant for CLIs (import, sources): produce, flush, and fail loudly on any loss."""
        errors: list[KafkaError] = []

        def cb(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                errors.append(err)

        for topic, key, value in records:
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, on_delivery=cb)
                    break
                except BufferError:
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


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)
