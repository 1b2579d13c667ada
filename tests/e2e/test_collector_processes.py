"""`cdp collector` with CDP_COLLECTOR_PROCESSES=2: two processes serve one port (real broker), both take
connections, every accepted event is in Kafka, and the extra process ends with the first, stopped or killed."""

from __future__ import annotations

import base64
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.fixtures import read_topic
from tests.support.service import CdpProcess

pytestmark = pytest.mark.e2e


def _listeners(port: int) -> set[int]:
    """Pids of the processes holding a listening TCP socket on ``port`` (from /proc, no tools needed)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                    inodes.add(fields[9])
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pids.add(int(pid))
        except OSError:
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return {p for p in pids if _alive(p)}


def _start(kafka, tmp_path: Path) -> tuple[CdpProcess, set[int]]:
    cdp = CdpProcess(
        kafka.bootstrap, tmp_path / "data", f"t{uuid.uuid4().hex[:10]}", "collector", CDP_COLLECTOR_PROCESSES="2"
    ).start()
    deadline = time.monotonic() + 60
    while len(pids := _listeners(cdp.port)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(pids) == 2, f"listeners on {cdp.port}: {pids}\n{cdp.output()[-2000:]}"
    assert cdp.pid in pids
    return cdp, pids


def test_two_processes_share_the_port_and_lose_nothing(kafka, tmp_path: Path) -> None:
    cdp, pids = _start(kafka, tmp_path)
    key = cdp.write_keys["online"]
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    run = uuid.uuid4().hex[:8]
    sent = 0
    try:
        for i in range(60):  # a new connection per request: the kernel spreads them over both processes
            batch = [
                {"type": "track", "event": "Shared Port", "anonymousId": f"{run}-{i}", "messageId": f"{run}-{i}-{j}"}
                for j in range(5)
            ]
            r = httpx.post(f"{cdp.url}/v1/batch", content=orjson.dumps({"batch": batch}), headers=auth, timeout=30)
            assert r.status_code == 200, r.text
            sent += 5
        topic = f"{cdp.topic_prefix}.events.online"
        got = read_topic(kafka.bootstrap, topic, lambda recs: sum(r["messageId"].startswith(run) for r in recs) >= sent)
        assert sorted(r["messageId"] for r in got if r["messageId"].startswith(run)) == sorted(
            f"{run}-{i}-{j}" for i in range(60) for j in range(5)
        )
    finally:
        assert cdp.stop() == 0, cdp.output()[-3000:]
    assert _wait_gone(pids, 30) == set()  # SIGTERM to the first process stops the second too


def test_the_extra_process_dies_with_a_killed_first_one(kafka, tmp_path: Path) -> None:
    cdp, pids = _start(kafka, tmp_path)
    cdp.stop(signal.SIGKILL)
    assert _wait_gone(pids, 30) == set()  # no orphan keeps the port
