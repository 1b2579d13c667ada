"""`make run` stops in order: a SIGTERM to its process group (what a supervisor or a terminal's Ctrl-C sends)
reaches cdp and not the broker, which runs in a session of its own; cdp flushes into a live broker, then the broker
is stopped. Within seconds, without tracebacks or a flood of connection errors.

Runs its own broker on free ports and its own data folders.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bench.stack import ROOT, free_port

pytestmark = pytest.mark.e2e

LEFT_OUT = ("CDP_KAFKA_BOOTSTRAP", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")


def _ready(url: str, proc: subprocess.Popen[str], timeout: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert proc.poll() is None, "make run exited before it was ready"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready after {timeout} s")


def test_sigterm_to_the_run_group_stops_cdp_then_the_broker(tmp_path: Path) -> None:
    port = free_port()
    kafka_data = tmp_path / "kafka"
    env = {k: v for k, v in os.environ.items() if k not in LEFT_OUT}
    env |= {"CDP_DATA_DIR": str(tmp_path / "cdp"), "CDP_HTTP_PORT": str(port), "CDP_TOPIC_PREFIX": "mr"}
    make = [
        "make", "-s", "run", f"KAFKA_DATA={kafka_data}",
        f"KAFKA_PORT={free_port()}", f"KAFKA_CONTROLLER_PORT={free_port()}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        make, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _ready(f"http://127.0.0.1:{port}/readyz", proc, 180)
        broker_pid = int((kafka_data / "broker.pid").read_text())
        assert os.getpgid(broker_pid) != proc.pid  # the broker is not in the run's group
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run([str(ROOT / "deploy/kafka/broker.sh"), "stop", str(kafka_data)], check=False)
    assert took < 25, f"took {took:.1f} s:\n{output[-3000:]}"
    assert "stopped cleanly" in output, output[-3000:]
    assert "Traceback" not in output and "did not finish" not in output, output[-3000:]
    assert output.count("Connection refused") < 5, output[-3000:]
    with pytest.raises(ProcessLookupError):
        os.kill(broker_pid, 0)  # the broker was stopped after cdp
