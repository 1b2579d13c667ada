"""Identity-message bundles (streams/bundles.py): partition, order and positions (unit, no broker)."""

from __future__ import annotations

import random

import orjson
from aiokafka.partitioner import murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams.bundles import (
    MAX_BUNDLE_BYTES,
    POSITION_SPAN,
    SCALED,
    bundle,
    load_position,
    partition_for,
    unbundle,
)

node_keys = st.text(min_size=1, max_size=40)


@given(st.lists(node_keys, min_size=1, max_size=50), st.integers(1, 12))
def test_partition_is_the_producers_for_a_keyed_send(keys: list[str], partitions: int) -> None:
    # The Java client's rule, which aiokafka's default partitioner follows: murmur2 of the key, positive, modulo.
    for key in keys:
        raw = key.encode()
        assert partition_for(raw, partitions) == (murmur2(raw) & 0x7FFFFFFF) % partitions


@given(
    st.lists(st.tuples(node_keys, st.integers(0, 10**6)), max_size=200),
    st.integers(1, 8),
)
def test_every_message_reaches_its_nodes_partition_in_send_order(sent: list[tuple[str, int]], partitions: int) -> None:
    messages = [(node, {"node": node, "n": i, "x": x}) for i, (node, x) in enumerate(sent)]
    records = bundle(messages, partitions)
    received: dict[int, list[dict]] = {}
    for offset, (p, key, value) in enumerate(records):
        assert partition_for(key, partitions) == p
        for _position, message in unbundle(value, offset):
            assert partition_for(message["node"].encode(), partitions) == p
            received.setdefault(p, []).append(message)
    expected: dict[int, list[dict]] = {}
    for node, message in messages:
        expected.setdefault(partition_for(node.encode(), partitions), []).append(message)
    assert received == expected  # nothing lost, nothing added, per-partition order kept


def test_big_bundles_are_cut_below_the_record_size_limit() -> None:
    rng = random.Random(7)
    messages = [("email:a@b.c", {"node": "email:a@b.c", "pad": "x" * rng.randint(100, 5000)}) for _ in range(1000)]
    records = bundle(messages, 1)
    assert len(records) > 1
    assert all(len(value) <= MAX_BUNDLE_BYTES for _, _, value in records)
    assert [m for _, _, v in records for m in orjson.loads(v)] == [m for _, m in messages]
    huge = [("k", {"node": "k", "pad": "y" * (2 * MAX_BUNDLE_BYTES)})]
    assert len(bundle(huge, 1)) == 1  # one oversized message still goes out, alone


@given(st.lists(st.integers(1, 30), min_size=1, max_size=30))
def test_positions_grow_along_the_partition_log(sizes: list[int]) -> None:
    # Records at growing offsets, singles and bundles mixed: positions must grow strictly, so `handle` never
    # takes a fresh message for a replay (which would make it repeat itself, message after message).
    positions = []
    for offset, size in enumerate(sizes):
        value = orjson.dumps({"node": "a"}) if size == 1 else orjson.dumps([{"node": "a"}] * size)
        positions += [pos for pos, _ in unbundle(value, offset)]
    assert positions == sorted(set(positions))


def test_a_state_stored_before_bundles_keeps_recognising_replays() -> None:
    # Its position is a bare offset: every message of that record and earlier is applied, later ones are not.
    old = load_position({"position": 41}, 41)
    assert old >= max(pos for pos, _ in unbundle(orjson.dumps([{}] * 5), 41))
    assert old < next(pos for pos, _ in unbundle(orjson.dumps({}), 42))
    assert load_position({"position": 41 * POSITION_SPAN + 3, SCALED: 1}, 41 * POSITION_SPAN + 3) == (
        41 * POSITION_SPAN + 3
    )
    assert load_position({"position": -1}, -1) == -1
