"""Broker outage: while Kafka is down the collector answers 503 with Retry-After within a bounded time (never a
hang, never a 200 for an event the broker did not take); once Kafka is back every event that got a 200 is in
ClickHouse exactly once, including the ones SDKs retried after a 503.

Runs its own broker (stopping the session broker would break every other test).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from tests.e2e.fixtures import in_list
from tests.support.broker import Broker
from tests.support.service import CdpProcess

pytestmark = pytest.mark.e2e

BOUND_S = 5.0  # the acceptance bound for an answer while the broker is down
SLACK_S = 1.5  # HTTP + scheduling on a loaded 2-core machine


def _restart(broker: Broker) -> None:
    """Start the broker again on the same data folder and ports, and wait until it serves metadata.

    broker.sh decides "ready" by grepping its logs for "Kafka Server started"; the previous run's server.log
    already says so, so it is moved aside first (otherwise start returns before the broker listens).
    """
    log = broker.data_dir / "logs" / "server.log"
    if log.exists():
        log.rename(log.with_name(f"server.log.{int(time.time())}"))
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.list_topics(timeout=2)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_broker_outage_gives_503_fast_and_loses_nothing(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "kafka").start()
    service: CdpProcess | None = None
    run = uuid.uuid4().hex[:8]
    accepted: set[str] = set()  # message ids that got a 200
    pending: list[list[dict]] = []  # batches refused with 503, to be retried as an SDK would
    seq = iter(range(1_000_000))

    def batch(n: int) -> list[dict]:
        return [
            {"type": "track", "event": "Outage", "anonymousId": f"a-{run}-{i % 5}", "messageId": f"{run}-{next(seq)}"}
            for i in range(n)
        ]

    try:
        service = CdpProcess(broker.bootstrap, tmp_path / "data", f"t{uuid.uuid4().hex[:10]}").start()
        service.wait_ready()
        key = service.write_keys["online"]

        async def send(client: httpx.AsyncClient, events: list[dict]) -> tuple[int, float, httpx.Response]:
            started = time.monotonic()
            if len(events) == 1:
                r = await client.post("/v1/track", json=events[0])
            else:
                r = await client.post("/v1/batch", json={"batch": events})
            return r.status_code, time.monotonic() - started, r

        async def phase(batches: list[list[dict]]) -> list[tuple[int, float, httpx.Response]]:
            async with httpx.AsyncClient(base_url=service.url, auth=(key, ""), timeout=60) as client:
                return list(await asyncio.gather(*(send(client, b) for b in batches)))

        # 1. Broker up: everything accepted.
        before = [batch(1) for _ in range(5)] + [batch(20) for _ in range(3)]
        for events, (status, _, r) in zip(before, asyncio.run(phase(before)), strict=True):
            assert status == 200, r.text
            accepted.update(e["messageId"] for e in events)

        # 2. Broker down: 503 + Retry-After, every answer within the bound, nothing hangs.
        broker.stop()
        outage: list[list[dict]] = []
        for round_ in range(2):
            batches = [batch(1) for _ in range(4)] + [batch(10) for _ in range(2)]
            outage += batches
            results = asyncio.run(phase(batches))
            for events, (status, elapsed, r) in zip(batches, results, strict=True):
                assert elapsed < BOUND_S + SLACK_S, f"round {round_}: answered after {elapsed:.1f} s"
                assert status == 503, (status, r.text)
                assert int(r.headers["Retry-After"]) > 0
                assert r.json()["success"] is False and r.json()["error"]
                pending.append(events)
        # The service itself stays up and says it is not ready.
        assert httpx.get(f"{service.url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{service.url}/readyz", timeout=10).status_code == 503

        # 3. Broker back: clients retry what got 503 (same messageIds) until accepted, and send new events.
        _restart(broker)
        deadline = time.monotonic() + 90
        after = [batch(1) for _ in range(5)] + [batch(20) for _ in range(2)]
        todo = pending + after
        last = ""
        while todo and time.monotonic() < deadline:
            results = asyncio.run(phase(todo))
            retry = []
            for events, (status, elapsed, r) in zip(todo, results, strict=True):
                assert elapsed < BOUND_S + SLACK_S, f"answered after {elapsed:.1f} s"
                if status == 200:
                    accepted.update(e["messageId"] for e in events)
                else:
                    assert status == 503, (status, r.text)
                    retry.append(events)
                    last = r.text
            todo = retry
            if todo:
                time.sleep(1)
        assert not todo, f"still refused {len(todo)} requests 90 s after the broker came back: {last}"
        assert len(accepted) == 5 + 60 + 2 * (4 + 20) + 5 + 40

        # 4. Every acknowledged event is in ClickHouse, once.
        query = f"SELECT count() FROM cdp.events WHERE message_id LIKE '{run}-%'"
        try:
            service.wait_for(query, len(accepted), timeout=120)
        except AssertionError:
            stored = {r[0] for r in service.sql(f"SELECT message_id FROM cdp.events WHERE message_id LIKE '{run}-%'")}
            missing = sorted(accepted - stored)
            raise AssertionError(
                f"{len(missing)} acknowledged events missing, e.g. {missing[:5]}; log tail:\n{service.output()[-3000:]}"
            ) from None
        stored_ids = service.scalar(
            f"SELECT uniqExact(message_id) FROM cdp.events WHERE message_id IN ({in_list(accepted)})"
        )
        assert stored_ids == len(accepted)
        assert service.scalar(query) == len(accepted)  # no duplicates, nothing that was never acknowledged
    finally:
        try:
            if service is not None:
                code = service.stop()
                assert code == 0, service.output()[-3000:]
        finally:
            broker.stop()
