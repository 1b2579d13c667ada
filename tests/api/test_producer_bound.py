"""The collector's producer answers within its timeout whatever the broker does: no acknowledgement, or a local
queue that stays full (broker down under load). A request must get its 503, never hang."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.producer import AsyncProducer, ProduceTimeout

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: messages queue up and are never acknowledged


def test_no_acknowledgement_times_out_within_the_bound() -> None:
    producer = AsyncProducer(UNREACHABLE)
    try:
        started = time.monotonic()
        with pytest.raises(ProduceTimeout):
            asyncio.run(producer.send_many([("t.events.online", b"k", b"{}")], timeout=0.5))
        assert time.monotonic() - started < 1.5
    finally:
        producer.close(timeout=0)


def test_full_local_queue_times_out_within_the_bound() -> None:
    producer = AsyncProducer(UNREACHABLE, **{"queue.buffering.max.messages": 3})
    try:
        started = time.monotonic()
        with pytest.raises(ProduceTimeout, match="queue full"):
            asyncio.run(producer.send_many([("t.events.online", None, b"{}")] * 10, timeout=0.5))
        assert time.monotonic() - started < 1.5
    finally:
        producer.close(timeout=0)
