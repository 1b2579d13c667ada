"""Identity messages travel in bundles: one Kafka record per partition per stitch batch, holding every message
the batch sends to nodes of that partition.

Why: a record costs Faust about as much to send and to consume as the protocol's own work on the message it
carries (measured: ~100 us per record through the consumer path, ~150 us per message handled and sent), and
a batch of 500 messages spreads its replies over only a few partitions. Faust still sees one record; the
stitch agent unpacks it.

A node's messages must all arrive in its own partition, in order. A bundle is sent to an explicit partition,
computed for each message's node key with the partitioner Faust's producer (aiokafka) uses for keyed sends, so
a bundled message lands where the same message sent alone (an Observe from ingest) would. The order inside a
bundle is the order of the sends.

Positions: ``handle`` recognises a replayed message by its position in the node's input log, which must grow
along the partition. A message's position is ``offset * POSITION_SPAN + index in its record``; a single
message (an Observe) is index 0. States stored before bundles carried the bare offset; ``load_position``
scales such a position up, marking every index of that offset as applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

POSITION_SPAN = 1 << 20
"""Positions per record: more than any bundle holds (bundles are cut at MAX_BUNDLE_MESSAGES)."""
MAX_BUNDLE_MESSAGES = 10_000
MAX_BUNDLE_BYTES = 512 * 1024
"""Below Kafka's default message.max.bytes (1 MB) with room for the record batch framing."""
SCALED = "pscale"
"""Key in a stored node state: its position is on the bundle scale (states written before have bare offsets)."""

_partitioner = DefaultPartitioner()


def partition_for(key: bytes, partitions: int) -> int:
    """The partition aiokafka's default partitioner gives a keyed record (murmur2, like the Java client)."""
    all_partitions = list(range(partitions))
    return int(_partitioner(key, all_partitions, all_partitions))


def bundle(messages: Iterable[tuple[str, dict[str, Any]]], partitions: int) -> list[tuple[int, bytes, bytes]]:
    """(node key, message dict) in send order -> (partition, key, value) records: per partition, the messages
    in the same order, as JSON arrays cut at MAX_BUNDLE_MESSAGES / MAX_BUNDLE_BYTES. The key is the first
    message's node (informational: the partition is given explicitly)."""
    per_partition: dict[int, list[tuple[str, bytes]]] = {}
    cache: dict[str, int] = {}
    for node, message in messages:
        p = cache.get(node)
        if p is None:
            p = cache[node] = partition_for(node.encode(), partitions)
        per_partition.setdefault(p, []).append((node, orjson.dumps(message)))
    records: list[tuple[int, bytes, bytes]] = []
    for p, items in per_partition.items():
        start = 0
        while start < len(items):
            end, size = start, 2
            while end < len(items) and end - start < MAX_BUNDLE_MESSAGES:
                size += len(items[end][1]) + 1
                if size > MAX_BUNDLE_BYTES and end > start:
                    break
                end += 1
            value = b"[" + b",".join(m for _, m in items[start:end]) + b"]"
            records.append((p, items[start][0].encode(), value))
            start = end
    return records


def unbundle(value: bytes, offset: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position, message dict) of every message in a record: a bundle (JSON array) or a single message."""
    payload = orjson.loads(value)
    base = offset * POSITION_SPAN
    if isinstance(payload, list):
        for i, message in enumerate(payload):
            yield base + i, message
    else:
        yield base, payload


def load_position(stored: dict[str, Any], position: int) -> int:
    """A stored state's position on the bundle scale: a bare offset (a state stored before bundles) counts as
    every index of that offset applied."""
    if position < 0 or stored.get(SCALED):
        return position
    return position * POSITION_SPAN + POSITION_SPAN - 1
