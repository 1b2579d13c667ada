"""The stream side's metrics: consumer lag from librdkafka's statistics, and a full producer queue counted and
logged at most once per interval."""

from __future__ import annotations

import logging

import orjson
import pytest
from prometheus_client import REGISTRY

from streams.metrics import lag_by_topic, lag_reporter, queue_full

STATS = {
    "name": "rdkafka#consumer-1",
    "topics": {
        "t.stitched": {"partitions": {"0": {"consumer_lag": 7}, "1": {"consumer_lag": 5}, "-1": {"consumer_lag": -1}}},
        "t.merges": {"partitions": {"0": {"consumer_lag": -1}}},
    },
}


def test_consumer_lag_per_topic_from_librdkafka_statistics() -> None:
    assert lag_by_topic(orjson.dumps(STATS)) == {"t.stitched": 12}
    lag_reporter("cdp-sink-x")(orjson.dumps(STATS).decode())
    assert REGISTRY.get_sample_value("cdp_consumer_lag", {"group": "cdp-sink-x", "topic": "t.stitched"}) == 12


def test_a_full_producer_queue_is_counted_and_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    before = REGISTRY.get_sample_value("cdp_producer_queue_full_total", {"where": "test"}) or 0
    with caplog.at_level(logging.WARNING, logger="cdp.producer"):
        for _ in range(1000):
            queue_full("test")
    assert REGISTRY.get_sample_value("cdp_producer_queue_full_total", {"where": "test"}) == before + 1000
    assert len([r for r in caplog.records if "producer queue full" in r.getMessage()]) == 1
