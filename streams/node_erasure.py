"""Erasing a person's identity-graph nodes: Erase messages to the stitch workers, and the proof that they acted.

The node states live on the stitch workers (their RocksDB stores) and in the compacted changelog they restore from
(streams/stitcher.py). Deleting them from outside would race the worker that owns them, so a regulation sends an
``Erase`` (identity/graph.py) for every identifier of the cluster through the identity-messages topic, keyed by the
node like every protocol message (so on the node's partition, in order with the messages before it). The owning
worker deletes the node, writes its tombstone to the changelog in the batch's transaction, purges its store's files
(streams/node_store.py) and passes the Erase on to the rest of the component. The regulation then reads the changelog
from where it ended before the Erases were sent, until every node sent one has its tombstone: the stage is finished
only when the workers have done it, so a restart or a new worker, which restore from the changelog, cannot bring
the nodes back. Without a running stitch worker the stage fails after ``timeout_s`` (submit the regulation again).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

import orjson
from confluent_kafka import Consumer, TopicPartition

from identity.graph import Erase
from streams.follow import high_watermark
from streams.partitioner import partition_for
from streams.producer import AsyncProducer
from streams.stitch_batch import changelog_key
from streams.topics import Topics

__all__ = ["NodeEraser"]

WAIT_S = 120.0  # the stitch workers handle identity messages first in every batch: this is a worker that is down


class NodeEraser:
    """``erase(producer, node_keys, cause)``: the nodes' Erases sent and their tombstones seen (blocking)."""

    def __init__(self, bootstrap: str, topics: Topics, partitions: int, timeout_s: float = WAIT_S) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.partitions = partitions
        self.timeout_s = timeout_s

    def erase(self, producer: AsyncProducer, node_keys: Sequence[str], cause: str) -> int:
        """Returns how many nodes were erased (each a tombstone on its partition of the changelog)."""
        if not node_keys:
            return 0
        changelog = self.topics.identity_nodes
        reader = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"cdp-node-erasure-{secrets.token_hex(6)}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 50,
            }
        )
        try:
            wanted = {changelog_key(k): partition_for(k, self.partitions) for k in node_keys}
            partitions = sorted(set(wanted.values()))
            reader.assign(
                [TopicPartition(changelog, p, high_watermark(reader, changelog, p)) for p in partitions]
            )  # from the end as it is now: the tombstones to come are after it
            ops = self.topics.identity_ops
            producer.send_sync([(ops, k.encode(), orjson.dumps(Erase(k, cause).to_dict())) for k in node_keys])
            deadline = time.monotonic() + self.timeout_s
            while wanted and time.monotonic() < deadline:
                for record in reader.consume(1000, 0.2):
                    if record.error() is None and record.value() is None:
                        wanted.pop(record.key() or b"", None)
            if wanted:
                raise TimeoutError(
                    f"{len(wanted)} of {len(node_keys)} identity nodes not erased within {self.timeout_s:.0f} s: "
                    "is a stitch worker running?"
                )
            return len(node_keys)
        finally:
            reader.close()
