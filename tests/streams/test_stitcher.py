"""The stitcher's batch loop against the real broker, driven directly (no Faust): transactions, the changelog as the
truth of the node states, and recovery of a partition a worker gets."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from bench.stack import RecordCounter, prepare_cdp_topics, produce_all
from identity.graph import NodeState
from identity.rules import IdentityRules
from schemas.settings import Settings
from streams import stitcher as stitcher_module
from streams.keys import raw_event_key
from streams.partitioner import partition_for
from streams.producer import CHECKED_HEADER
from streams.stitcher import Stitcher

pytestmark = pytest.mark.e2e
RULES = IdentityRules.load(None)
PEOPLE = 40


def events(run: str) -> list[tuple[str, bytes | None, bytes]]:
    out = []
    for i in range(PEOPLE):
        for j, body in enumerate(
            [
                {"type": "identify", "userId": f"{run}-u{i}", "anonymousId": f"{run}-a{i}"},
                {"type": "track", "event": "Viewed", "anonymousId": f"{run}-a{i}"},
                {"type": "track", "event": "Bought", "userId": f"{run}-u{i}", "anonymousId": f"{run}-b{i}"},
            ]
        ):
            event = {**body, "messageId": f"{run}-{i}-{j}", "timestamp": f"2026-01-01T00:00:{j:02d}.000Z"}
            out.append((f"{run}.events.online", raw_event_key(event, RULES), orjson.dumps(event)))
    return out


def stitched(counter: RecordCounter, want: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while counter.count() < want:
        assert time.monotonic() < deadline, f"{counter.count()} of {want} stitched"
        time.sleep(0.1)


def run_stitcher(settings: Settings) -> Stitcher:
    failures: list[BaseException] = []
    stitcher = Stitcher(settings, RULES, on_failure=failures.append).start()
    stitcher.assign(range(settings.topic_partitions))
    return stitcher


def node_states(stitcher: Stitcher, keys: list[str]) -> dict[str, NodeState]:
    out = {}
    for key in keys:
        raw = stitcher.store.get(partition_for(key, 4), key)
        if raw is not None:
            out[key] = NodeState.from_dict(orjson.loads(raw))
    return out


def test_a_worker_that_gets_the_partitions_recovers_the_node_states_from_the_changelog(kafka, tmp_path: Path) -> None:
    run = f"t{uuid.uuid4().hex[:8]}"
    prepare_cdp_topics(kafka.bootstrap, run)
    first = Settings(
        kafka_bootstrap=kafka.bootstrap,
        privacy_key="k",
        profile_key="k",
        topic_prefix=run,
        data_dir=tmp_path / "a",
        worker_id="a",
    )
    counter = RecordCounter(kafka.bootstrap, [f"{run}.events.stitched"])
    records = events(run)
    stitcher = run_stitcher(first)
    try:
        produce_all(kafka.bootstrap, records, headers=[CHECKED_HEADER])
        stitched(counter, len(records))
    finally:
        stitcher.stop()
    keys = [f"{t}:{run}-{x}{i}" for i in range(PEOPLE) for t, x in (("user_id", "u"), ("anonymous_id", "a"))]
    keys += [f"anonymous_id:{run}-b{i}" for i in range(PEOPLE)]
    for partition in range(4):
        stitcher.store.open(partition)
    expected = node_states(stitcher, keys)
    stitcher.store.close_all()
    assert len(expected) == len(keys)
    # One profile per person: the user id, both cookies.
    for i in range(PEOPLE):
        person = [f"user_id:{run}-u{i}", f"anonymous_id:{run}-a{i}", f"anonymous_id:{run}-b{i}"]
        assert len({expected[k].label for k in person}) == 1

    # Another worker, with an empty disk, takes the partitions over: it reads every state from the changelog.
    second = Settings(
        kafka_bootstrap=kafka.bootstrap,
        privacy_key="k",
        profile_key="k",
        topic_prefix=run,
        data_dir=tmp_path / "b",
        worker_id="b",
    )
    other = run_stitcher(second)
    try:
        deadline = time.monotonic() + 60
        while other.store.partitions != {0, 1, 2, 3} or len(node_states(other, keys)) < len(keys):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert node_states(other, keys) == expected
        # ... and goes on from the committed offsets: nothing is stitched twice.
        time.sleep(2)
        assert counter.count() == len(records)
    finally:
        other.stop()
        counter.close()


def test_a_local_store_ahead_of_its_changelog_is_rebuilt(kafka, tmp_path: Path) -> None:
    run = f"t{uuid.uuid4().hex[:8]}"
    prepare_cdp_topics(kafka.bootstrap, run)
    settings = Settings(
        kafka_bootstrap=kafka.bootstrap,
        privacy_key="k",
        profile_key="k",
        topic_prefix=run,
        data_dir=tmp_path,
        worker_id="w",
    )
    stitcher = Stitcher(settings, RULES, on_failure=lambda exc: None)
    stitcher.store.open(1)
    stitcher.store.write(1, {"user_id:ghost": b'{"stale": true}'}, next_offset=10_000)  # a changelog that is gone
    stitcher.store.close_all()
    stitcher.start()
    stitcher.assign([1])
    try:
        deadline = time.monotonic() + 30
        while stitcher.owned != {1}:  # recovered: the store is open (after a rebuild) once the partition is owned
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert stitcher.store.get(1, "user_id:ghost") is None and stitcher.store.next_offset(1) == 0
    finally:
        stitcher.stop()


def test_a_fenced_producer_is_renewed_and_nothing_is_lost_or_doubled(kafka, tmp_path: Path) -> None:
    """A transaction the broker aborted during an outage fences the worker's producer for good: the stitcher takes
    a new one and reads the batch again. Fenced here on purpose, by another producer with the same id."""
    run = f"t{uuid.uuid4().hex[:8]}"
    prepare_cdp_topics(kafka.bootstrap, run)
    settings = Settings(
        kafka_bootstrap=kafka.bootstrap,
        privacy_key="k",
        profile_key="k",
        topic_prefix=run,
        data_dir=tmp_path,
        worker_id="w",
    )
    failures: list[BaseException] = []
    stitcher = Stitcher(settings, RULES, on_failure=failures.append).start()
    stitcher.assign(range(4))
    counter = RecordCounter(kafka.bootstrap, [f"{run}.events.stitched"])
    records = events(run)
    try:
        produce_all(kafka.bootstrap, records[: len(records) // 2], headers=[CHECKED_HEADER])
        stitched(counter, len(records) // 2)
        usurper = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"{run}-stitch-w"})
        usurper.init_transactions(30)  # bumps the epoch: the stitcher's producer is fenced
        produce_all(kafka.bootstrap, records[len(records) // 2 :], headers=[CHECKED_HEADER])
        stitched(counter, len(records))
        time.sleep(2)
        assert counter.count() == len(records) and not failures
    finally:
        stitcher.stop()
        counter.close()


class _OffsetsRefusedOnce:
    """The stitcher's producer, but its first ``send_offsets_to_transaction`` fails as it does while the
    transaction coordinator moves to another broker (a broker of a cluster killed): a retriable error."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.refused = 0

    def send_offsets_to_transaction(self, *args: object) -> None:
        if not self.refused:
            self.refused += 1
            raise KafkaException(KafkaError(KafkaError.CONCURRENT_TRANSACTIONS, "moving", retriable=True))
        self.producer.send_offsets_to_transaction(*args)

    def release_all(self) -> None:
        """Nothing held back."""

    def __getattr__(self, name: str) -> object:
        return getattr(self.producer, name)


def _stitch_through(
    kafka, tmp_path: Path, wrap: type[_OffsetsRefusedOnce]
) -> tuple[_OffsetsRefusedOnce, Stitcher, int, list[BaseException]]:
    """Stitch a run's events with the stitcher's producer wrapped; returns the wrapper, the stitcher (stopped),
    how many stitched events there were against those sent (their difference) and the failures reported."""
    run = f"t{uuid.uuid4().hex[:8]}"
    prepare_cdp_topics(kafka.bootstrap, run)
    settings = Settings(
        kafka_bootstrap=kafka.bootstrap,
        privacy_key="k",
        profile_key="k",
        topic_prefix=run,
        data_dir=tmp_path,
        worker_id="w",
    )
    failures: list[BaseException] = []
    stitcher = Stitcher(settings, RULES, on_failure=failures.append).start()
    wrapper = wrap(stitcher._producer)
    stitcher._producer = wrapper  # type: ignore[assignment]
    stitcher.assign(range(4))
    counter = RecordCounter(kafka.bootstrap, [f"{run}.events.stitched"])
    records = events(run)
    try:
        produce_all(kafka.bootstrap, records, headers=[CHECKED_HEADER])
        stitched(counter, len(records))
        time.sleep(1)
        return wrapper, stitcher, counter.count() - len(records), failures
    finally:
        wrapper.release_all()
        stitcher.stop()
        counter.close()


def test_a_retriable_error_adding_the_offsets_is_retried_not_fatal(kafka, tmp_path: Path) -> None:
    flaky, _, off, failures = _stitch_through(kafka, tmp_path, _OffsetsRefusedOnce)
    assert flaky.refused == 1 and off == 0 and not failures


class _OffsetsHangOnce(_OffsetsRefusedOnce):
    """Its first ``send_offsets_to_transaction`` never returns, as librdkafka's can after the group's
    coordinator went away (it waits past its own timeout)."""

    def __init__(self, producer: Producer) -> None:
        super().__init__(producer)
        self.release = threading.Event()

    def send_offsets_to_transaction(self, *args: object) -> None:
        if not self.refused:
            self.refused += 1
            self.release.wait()
        self.producer.send_offsets_to_transaction(*args)

    def release_all(self) -> None:
        self.release.set()


def test_a_hung_call_adding_the_offsets_gives_way_to_a_new_producer(
    kafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stitcher_module, "HUNG_AFTER_S", 1.0)
    hung, stitcher, off, failures = _stitch_through(kafka, tmp_path, _OffsetsHangOnce)
    assert hung.refused == 1 and stitcher._producer is not hung
    assert off == 0 and not failures


def test_a_transactional_call_retried_past_the_limit_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call that keeps timing out (a transaction the coordinator aborted while the broker was away) is not
    retried for ever: past the limit the stitcher gives up on the transaction, and a new producer takes over."""
    monkeypatch.setattr(stitcher_module, "RETRY_LIMIT_S", 0.6)
    monkeypatch.setattr(stitcher_module.time, "sleep", lambda s: None)
    settings = Settings(kafka_bootstrap="127.0.0.1:1", privacy_key="k", data_dir=tmp_path, worker_id="w")
    stitcher = Stitcher(settings, RULES, on_failure=lambda exc: None)
    calls = []

    def times_out() -> None:
        calls.append(time.monotonic())
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to add offsets to transaction", retriable=True))

    with pytest.raises(stitcher_module._GaveUp):
        stitcher._retry(times_out)
    assert len(calls) > 1 and calls[-1] - calls[0] >= 0.5  # the first call comes just after the deadline is set
