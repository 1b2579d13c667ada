"""Following a topic into memory: caught up at the end offset, also when transactions wrote the topic."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Message, Producer

from bench.stack import create_topics
from streams.follow import TopicFollower

pytestmark = pytest.mark.e2e


def test_catches_up_on_a_topic_that_ends_with_a_transaction_marker(kafka) -> None:
    """The stitcher writes the identities topic in transactions: its last offset is a commit marker, never a
    record, so a follower waiting for the last record's offset would never catch up."""
    topic = f"t{uuid.uuid4().hex[:10]}.identities"
    create_topics(kafka.bootstrap, [topic], partitions=2)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"test-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    for batch in range(3):
        producer.begin_transaction()
        for i in range(10):
            producer.produce(topic, key=f"k{batch}-{i}".encode(), value=b"v")
        if batch == 1:
            producer.abort_transaction(30)  # aborted records are never seen, and end with a marker too
        else:
            producer.commit_transaction(30)
    seen: list[bytes] = []

    def apply(msg: Message) -> None:
        seen.append(msg.key() or b"")

    follower = TopicFollower(kafka.bootstrap, {topic: apply}).start(wait=20)
    try:
        assert sorted(seen) == sorted(f"k{b}-{i}".encode() for b in (0, 2) for i in range(10))
    finally:
        follower.stop()
