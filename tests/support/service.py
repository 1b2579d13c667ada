"""`cdp run` as a real subprocess against the test broker, driven over HTTP like a user would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.broker import free_port

ROOT = Path(__file__).resolve().parents[2]


class CdpProcess:
    def __init__(self, bootstrap: str, data_dir: Path, topic_prefix: str, parts: str = "run",
                 **env: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.parts = parts
        self.env = {
            **os.environ,
            "CDP_KAFKA_BOOTSTRAP": bootstrap,
            "CDP_DATA_DIR": str(data_dir),
            "CDP_TOPIC_PREFIX": topic_prefix,
            "CDP_HTTP_PORT": str(self.port),
            "CDP_LOG_LEVEL": "INFO",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"cdp-{self.port}.log"
        self.write_keys: dict[str, str] = {}
        self.admin_token = ""
        self.read_token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> CdpProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "cdp.cli", self.parts], env=self.env, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cdp exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            text = self.output()
            if "admin token" in text.split("cdp is running")[-1]:
                break
            time.sleep(0.1)
        else:
            raise TimeoutError(f"cdp did not start:\n{self.output()[-4000:]}")
        banner = self.output().split("cdp is running")[-1]
        self.write_keys = dict(re.findall(r"write key (\w+)\s*: (\S+)", banner))
        self.admin_token = re.search(r"admin token\s*: (\S+)", banner).group(1)  # type: ignore[union-attr]
        self.read_token = re.search(r"read token\s*: (\S+)", banner).group(1)  # type: ignore[union-attr]
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("not ready")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def sql(self, query: str) -> list[list[Any]]:
        r = httpx.post(f"{self.url}/v1/sql", json={"query": query}, headers=self.admin_headers(), timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["rows"]

    def scalar(self, query: str) -> Any:
        return self.sql(query)[0][0]

    def wait_for(self, query: str, expected: Any, timeout: float = 30.0) -> float:
        """Seconds until `query` returns `expected` (raises with the last value on timeout)."""
        started = time.monotonic()
        last = None
        while time.monotonic() - started < timeout:
            last = self.scalar(query)
            if last == expected:
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"{query!r} gave {last!r}, expected {expected!r} after {timeout} s")
