"""Kafka's default partitioner (murmur2), computed here so that a worker knows where a key lives.

The stitcher routes every identity message to the partition of its node and handles at once the messages
whose partition it owns, so it must compute the partition exactly as a producer would. Every producer of the
project sets ``partitioner=murmur2_random`` (librdkafka's default is CRC32, ``consistent_random``); that is the
Java client's and aiokafka's partitioner too, so a key lands on one partition whichever client writes it
(the old Faust workers wrote identity messages with aiokafka: their node states sit where this puts them).
"""

from __future__ import annotations

import struct
from functools import lru_cache

__all__ = ["PARTITIONER", "murmur2", "partition_for"]

PARTITIONER = "murmur2_random"
"""librdkafka's name for this partitioner (random only for records without a key)."""

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as an unsigned 32-bit number (``Utils.murmur2`` in the Java client)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length // 4
    for k in struct.unpack_from(f"<{whole}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = whole * 4
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@lru_cache(maxsize=1 << 17)
def partition_for(key: str, partitions: int) -> int:
    """The partition a producer with ``murmur2_random`` sends ``key`` (UTF-8) to, among ``partitions``.

    Cached: the same node keys come back again and again (a person's identifiers, on every event)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
