"""sinks.writer.Batch: what an insert and its commit need, gathered while the records are read (unit)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sinks.writer import Batch

records = st.lists(
    st.tuples(st.sampled_from(["a.events", "b.events"]), st.integers(0, 3), st.integers(0, 10_000), st.binary()),
    max_size=60,
)


@given(records)
def test_values_spans_token_and_commit_offsets(recs: list[tuple[str, int, int, bytes]]) -> None:
    batch = Batch()
    for topic, partition, offset, value in recs:
        batch.add(topic, partition, offset, value)
    assert batch.rows == len(recs)
    for topic in {t for t, *_ in recs}:
        # Values per topic, in consumption order.
        assert batch.values[topic] == [v for t, _, _, v in recs if t == topic]
        # The token names the lowest and highest offset per partition, partitions in order: a retry of the same
        # records gives the same token whatever their order inside the batch.
        parts = sorted({p for t, p, _, _ in recs if t == topic})
        lo_hi = [
            (
                p,
                min(o for t, q, o, _ in recs if t == topic and q == p),
                max(o for t, q, o, _ in recs if t == topic and q == p),
            )
            for p in parts
        ]
        assert batch.token(topic) == topic + "|" + ",".join(f"{p}:{lo}-{hi}" for p, lo, hi in lo_hi)
        shuffled = Batch()
        for t, p, o, v in reversed(recs):
            shuffled.add(t, p, o, v)
        assert shuffled.token(topic) == batch.token(topic)
    # Commit: the offset after the highest one read, per partition.
    expected = {(t, p): max(o for t2, p2, o, _ in recs if (t2, p2) == (t, p)) + 1 for t, p, _, _ in recs}
    assert {(tp.topic, tp.partition): tp.offset for tp in batch.next_offsets()} == expected


def test_tokens_of_different_offsets_differ() -> None:
    one, two = Batch(), Batch()
    one.add("t", 0, 10, b"x")
    two.add("t", 0, 11, b"x")
    assert one.token("t") != two.token("t")
