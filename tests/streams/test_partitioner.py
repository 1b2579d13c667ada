"""Kafka's murmur2 partitioner: ours, the Java client's test vectors, aiokafka's, and librdkafka's on a real broker."""

from __future__ import annotations

import random
import uuid

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from confluent_kafka import Producer

from bench.stack import create_topics
from streams.partitioner import PARTITIONER, murmur2, partition_for
from streams.producer import producer_config


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def test_java_client_vectors() -> None:
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    assert {data: _signed(murmur2(data)) for data in cases} == cases


def test_same_hash_as_aiokafka_for_any_bytes() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        assert murmur2(data) == aiokafka_murmur2(data)


def test_every_project_producer_uses_murmur2() -> None:
    assert producer_config("x")["partitioner"] == PARTITIONER == "murmur2_random"


@pytest.mark.e2e
def test_librdkafka_puts_every_key_where_partition_for_says(kafka) -> None:
    """The collector, the importer and the stitcher produce with librdkafka; the stitcher routes identity messages
    by partition_for: for thousands of identifier keys, the broker must hold each where partition_for says."""
    partitions = 7
    topic = f"t{uuid.uuid4().hex[:10]}.keys"
    create_topics(kafka.bootstrap, [topic], partitions)
    keys = [f"email:person{i}@example.com" for i in range(2500)] + [f"anonymous_id:{uuid.uuid4()}" for _ in range(2500)]
    producer = Producer(producer_config(kafka.bootstrap))
    placed: dict[str, int] = {}

    def report(err: object, msg: object) -> None:
        assert err is None
        placed[msg.key().decode()] = msg.partition()  # type: ignore[attr-defined]

    for key in keys:
        producer.produce(topic, value=b"x", key=key.encode(), on_delivery=report)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert placed == {key: partition_for(key, partitions) for key in keys}
    assert len(set(placed.values())) == partitions
