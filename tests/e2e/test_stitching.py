"""Identity stitching across partitions and worker processes, with the real broker and the real engine.

Chains of identifiers (cookie c0 -device d0- cookie c1 -device d1- ...) are linked only transitively, so every
chain must end as one profile even though its identifiers hash to different partitions, owned by different
worker processes; a worker killed mid-stream and restarted must lose no link, whether it gets its partitions
back at once or after the survivor has taken them over (and recovered their node states from the changelog).
"""

from __future__ import annotations

import random
import signal
import time
import uuid

import httpx
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.e2e.fixtures import group_members
from tests.support.service import CdpProcess

pytestmark = pytest.mark.e2e
LINKS_PER_CHAIN = 8  # below the default device_id limit (10), so no link is refused


def chain_events(run: str, chains: int, seed: int) -> tuple[list[dict], dict[str, set[str]]]:
    events, truth = [], {}
    for c in range(chains):
        ids: set[str] = set()
        for i in range(LINKS_PER_CHAIN):
            cookie, device, next_cookie = f"{run}-c{c}-{i}", f"{run}-d{c}-{i}", f"{run}-c{c}-{i + 1}"
            for anon in (cookie, next_cookie):
                events.append(
                    {
                        "type": "track",
                        "event": "Chain",
                        "anonymousId": anon,
                        "context": {"device": {"id": device}},
                        "messageId": str(uuid.uuid4()),
                    }
                )
            ids |= {f"anonymous_id:{cookie}", f"anonymous_id:{next_cookie}", f"device_id:{device}"}
        truth[f"chain{c}"] = ids
    random.Random(seed).shuffle(events)
    return events, truth


def post_all(service: CdpProcess, events: list[dict]) -> None:
    with httpx.Client(auth=(service.write_keys["online"], ""), timeout=30) as client:
        for i in range(0, len(events), 50):
            r = client.post(f"{service.url}/v1/batch", json={"batch": events[i : i + 50]})
            assert r.status_code == 200, r.text


def profiles_by_identifier(service: CdpProcess, run: str) -> dict[str, list[str]]:
    rows = service.sql(
        f"SELECT concat(id_type, ':', id_value), groupUniqArray(profile_id) FROM cdp.identities "
        f"WHERE id_value LIKE '{run}-%' GROUP BY 1"
    )
    return {k: v for k, v in rows}


def wait_stitched(service: CdpProcess, run: str, truth: dict[str, set[str]], timeout: float = 120) -> None:
    expected = sum(len(ids) for ids in truth.values())
    deadline = time.monotonic() + timeout
    last: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        last = profiles_by_identifier(service, run)
        if len(last) == expected and all(len(p) == 1 for p in last.values()):
            per_chain = [{last[k][0] for k in ids} for ids in truth.values()]
            if all(len(p) == 1 for p in per_chain):
                # one profile per chain, and different chains never share a profile
                assert len({next(iter(p)) for p in per_chain}) == len(truth)
                return
        time.sleep(0.5)
    split = {name: {last.get(k, ["?"])[0] for k in ids} for name, ids in truth.items()}
    raise AssertionError(
        f"not stitched: {len(last)}/{expected} identifiers; "
        f"chains split: {[n for n, p in split.items() if len(p) > 1][:5]}"
    )


@pytest.fixture
def two_workers(kafka, data_dir, topic_prefix):
    main = CdpProcess(kafka.bootstrap, data_dir, topic_prefix).start()
    main.wait_ready()
    extra_env = {"CDP_WORKER_SINKS": "false", "CDP_WORKER_ID": "w1"}
    second = CdpProcess(kafka.bootstrap, data_dir, topic_prefix, parts="worker", **extra_env).start()
    yield main, second, (kafka.bootstrap, data_dir, topic_prefix, extra_env)
    second.stop()
    assert main.stop() == 0, main.output()[-3000:]


def wait_committed(bootstrap: str, group: str, topic: str, partitions: int = 4, timeout: float = 60) -> None:
    """Wait until the group has committed progress on every partition of ``topic`` (both workers are mid-stream)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    deadline = time.monotonic() + timeout
    offsets: list[int] = []
    while time.monotonic() < deadline:
        result = admin.list_consumer_group_offsets([request])[group].result(10)
        offsets = [tp.offset for tp in result.topic_partitions]
        if all(offset > 0 for offset in offsets):
            return
        time.sleep(0.2)
    raise AssertionError(f"no progress committed on every partition of {topic}: {offsets}")


def test_transitive_merges_across_partitions_and_workers(two_workers) -> None:
    main, _second, (bootstrap, _, prefix, _) = two_workers
    assert group_members(bootstrap, f"{prefix}-stitch") == 2  # both processes own partitions
    run = uuid.uuid4().hex[:6]
    events, truth = chain_events(run, chains=20, seed=1)
    post_all(main, events)
    wait_stitched(main, run, truth)
    merges = main.scalar(
        f"SELECT count() FROM cdp.merges WHERE cause IN "
        f"(SELECT message_id FROM cdp.events WHERE anonymous_id LIKE '{run}-%')"
    )
    assert merges > 0  # every merge is recorded with the event that caused it


@pytest.mark.parametrize("takeover", [False, True], ids=["restart_at_once", "restart_after_takeover"])
def test_worker_killed_mid_stream_loses_no_link(two_workers, takeover: bool) -> None:
    main, second, (bootstrap, data_dir, prefix, extra_env) = two_workers
    group = f"{prefix}-stitch"
    assert group_members(bootstrap, group) == 2
    run = uuid.uuid4().hex[:6]
    events, truth = chain_events(run, chains=40, seed=2)
    half = len(events) // 2
    post_all(main, events[:half])
    # Killed once it has committed some of its work: what it did after its last commit is replayed, and the
    # restarted worker starts from committed offsets and a RocksDB that may be ahead of them.
    wait_committed(bootstrap, group, f"{prefix}.identity.ops")
    second.stop(signal.SIGKILL)  # no clean shutdown: uncommitted offsets and table changes are replayed
    post_all(main, events[half:])
    if takeover:
        # The broker drops the dead member after the session timeout (60 s): the survivor takes its partitions
        # over, recovering their node states from the changelog, and hands them back to the restarted worker.
        assert group_members(bootstrap, group, want=1, timeout=120) == 1
    restarted = CdpProcess(bootstrap, data_dir, prefix, parts="worker", **extra_env).start()
    try:
        wait_stitched(main, run, truth, timeout=180)
    finally:
        restarted.stop()
