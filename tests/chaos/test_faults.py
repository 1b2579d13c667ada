"""Fault injection against the real stack: each run seeds unique events through the collector with an SDK-like
client, injects a fault while they flow, and checks from ClickHouse that every event answered 200 is stored
exactly once and stitched, and nothing else is (tests/chaos/fixtures.py).

`make chaos` runs all five in full (CHAOS=full: 20,000 events each, printing what was injected and the counts);
`make test` runs the two marked ``short`` at a small scale and skips the others.
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.stack import Broker, Cluster, prepare_cdp_topics
from tests.chaos.fixtures import ChaosRun, Scale, cdp_table_folders, scale_from_env, stitch_members, writes_refused
from tests.support.service import CdpProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# deploy/kafka/README.md: on the cluster the collector waits longer for an acknowledgement, so that a broker's
# failover is a slow answer rather than a 503.
CLUSTER_ENV = {"CDP_TOPIC_REPLICATION": "3", "CDP_TOPIC_MIN_INSYNC": "2", "CDP_PRODUCE_TIMEOUT_S": "15"}
STITCH_ONLY = {"CDP_WORKER_SINKS": "false"}


def short(test: Callable[..., Any]) -> Callable[..., Any]:
    """A run that `make test` includes, at the short scale."""
    test.short = True  # type: ignore[attr-defined]
    return test


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> Scale:
    chosen = scale_from_env()
    if not chosen.full and not getattr(request.function, "short", False):
        pytest.skip("run by `make chaos` (CHAOS=full)")
    return chosen


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    """Whatever a run starts is stopped here, in reverse order, however the run ended."""
    with contextlib.ExitStack() as processes:
        yield processes


def start_cdp(stack: contextlib.ExitStack, *args: Any, **env: str) -> CdpProcess:
    proc = CdpProcess(*args, **env)
    stack.callback(proc.stop)
    proc.start()
    if proc.parts == "run":
        proc.wait_ready()
    return proc


def begin(stack: contextlib.ExitStack, name: str, scale: Scale, service: CdpProcess) -> ChaosRun:
    run = ChaosRun(name, scale, service, f"ch{uuid.uuid4().hex[:8]}")
    stack.callback(run.abandon)
    run.start_load()
    return run


def finish(run: ChaosRun) -> None:
    run.finish()
    assert run.service.stop() == 0, run.service.output()[-3000:]


@short
def test_brokers_of_a_cluster_killed_and_restarted_under_load(
    tmp_path: Path, scale: Scale, topic_prefix: str, stack: contextlib.ExitStack
) -> None:
    cluster = Cluster(tmp_path / "cluster")
    stack.callback(cluster.stop)
    cluster.start()
    prepare_cdp_topics(cluster.bootstrap, topic_prefix, topic_replication=3, topic_min_insync=2)
    service = start_cdp(stack, cluster.bootstrap, tmp_path / "data", topic_prefix, **CLUSTER_ENV)
    run = begin(stack, "cluster-brokers", scale, service)
    for i, node in enumerate(Cluster.NODES[: scale.broker_kills]):
        run.at_progress(0.15 + 0.4 * i)
        cluster.kill(node)
        run.injected(f"kill -9 broker {node} of 3")
        time.sleep(scale.down_s)
        cluster.restart(node)
        run.injected(f"broker {node} restarted")
        took = cluster.wait_in_sync()
        run.injected(f"every replica in sync again ({took:.1f} s later)")
    report, _ = run.finish()
    print(f"[chaos cluster-brokers] longest stall {report.longest_stall_s:.2f} s; answers {dict(report.answers)}")
    # While 2 brokers are in sync the collector answers 200, only later (the longest stall is in the report). On a
    # starved machine a broker in sync can itself miss the collector's wait for an acknowledgement, so the short
    # run (make test) checks no loss and no double only, and leaves this to make chaos.
    if scale.full:
        assert set(report.answers) == {"200"}, report.summary()
    assert service.stop() == 0, service.output()[-3000:]


def test_stitch_worker_killed_restarted_and_rebalanced_under_load(
    kafka: Broker, tmp_path: Path, scale: Scale, topic_prefix: str, stack: contextlib.ExitStack
) -> None:
    prepare_cdp_topics(kafka.bootstrap, topic_prefix)
    data = tmp_path / "data"
    service = start_cdp(stack, kafka.bootstrap, data, topic_prefix)
    worker = start_cdp(stack, kafka.bootstrap, data, topic_prefix, "worker", CDP_WORKER_ID="w1", **STITCH_ONLY)
    assert stitch_members(kafka.bootstrap, topic_prefix, want=2) == 2
    run = begin(stack, "stitch-worker", scale, service)
    run.at_progress(0.2)
    worker.stop(signal.SIGKILL)
    run.injected("kill -9 stitch worker w1 (of 2)")
    time.sleep(scale.down_s)
    worker.relaunch()
    run.injected("worker w1 restarted (same worker id: its open transaction is aborted)")
    run.at_progress(0.5)
    third = start_cdp(stack, kafka.bootstrap, data, topic_prefix, "worker", CDP_WORKER_ID="w2", **STITCH_ONLY)
    run.injected("worker w2 started: 3 workers, a rebalance")
    run.at_progress(0.8)
    third.stop()
    run.injected("worker w2 stopped (SIGTERM): 2 workers, a rebalance")
    finish(run)


@short
def test_cdp_run_killed_and_restarted_under_load(
    kafka: Broker, tmp_path: Path, scale: Scale, topic_prefix: str, stack: contextlib.ExitStack
) -> None:
    prepare_cdp_topics(kafka.bootstrap, topic_prefix)
    service = start_cdp(stack, kafka.bootstrap, tmp_path / "data", topic_prefix)
    run = begin(stack, "cdp-run", scale, service)
    run.at_progress(0.25)
    service.stop(signal.SIGKILL)
    run.injected("kill -9 cdp run (collector, stitcher, sinks, API in one process)")
    service.relaunch()
    service.wait_ready()
    run.injected("cdp run restarted and ready")
    finish(run)


def test_clickhouse_refusing_writes_under_load(
    kafka: Broker, tmp_path: Path, scale: Scale, topic_prefix: str, stack: contextlib.ExitStack
) -> None:
    prepare_cdp_topics(kafka.bootstrap, topic_prefix)
    service = start_cdp(stack, kafka.bootstrap, tmp_path / "data", topic_prefix)
    folders = cdp_table_folders(service)
    run = begin(stack, "clickhouse", scale, service)
    run.at_progress(0.2)
    with writes_refused(folders):
        run.injected(f"ClickHouse refuses every write to the {len(folders)} tables of cdp")
        time.sleep(scale.clickhouse_outage_s)
    run.injected(f"ClickHouse takes writes again ({scale.clickhouse_outage_s:.0f} s later)")
    finish(run)


def test_single_broker_killed_and_restarted_under_load(
    tmp_path: Path, scale: Scale, topic_prefix: str, stack: contextlib.ExitStack
) -> None:
    broker = Broker(tmp_path / "kafka")
    stack.callback(broker.stop)
    broker.start()
    prepare_cdp_topics(broker.bootstrap, topic_prefix)
    service = start_cdp(stack, broker.bootstrap, tmp_path / "data", topic_prefix)
    run = begin(stack, "single-broker", scale, service)
    run.at_progress(0.25)
    broker.kill()
    run.injected("kill -9 the only broker")
    time.sleep(scale.down_s)
    broker.start()
    run.injected("broker restarted")
    finish(run)
