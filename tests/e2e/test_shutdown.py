"""Stopping is bounded: with its broker gone, `cdp run` still exits after SIGTERM within the shutdown deadline
(Faust and the Kafka clients would otherwise retry for ever and keep a core and the chDB folder).

Runs its own broker, which it kills.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.broker import Broker
from tests.support.service import CdpProcess

pytestmark = pytest.mark.e2e

DEADLINE_S = 8.0


def test_sigterm_with_the_broker_gone_exits_within_the_deadline(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "kafka").start()
    service = CdpProcess(
        broker.bootstrap, tmp_path / "cdp", "sd", CDP_SHUTDOWN_TIMEOUT_S=str(DEADLINE_S), CDP_LOG_LEVEL="ERROR"
    )
    try:
        service.start()
        service.wait_ready()
        key = service.write_keys["online"]
        r = httpx.post(f"{service.url}/v1/track", json={"event": "x", "anonymousId": "a"}, auth=(key, ""), timeout=10)
        assert r.status_code == 200
        broker.kill()  # the broker goes away first: Faust's consumers now retry for ever
        time.sleep(2)
        started = time.monotonic()
        code = service.stop(signal.SIGTERM, timeout=60)
        took = time.monotonic() - started
        assert took < DEADLINE_S + 10, f"took {took:.1f} s"
        assert code is not None and code != -signal.SIGKILL  # it exited by itself, not killed by the test
    finally:
        service.stop(signal.SIGKILL)
        broker.stop()
