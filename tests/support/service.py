"""`cdp run` (or any part) as a real subprocess against the test broker, driven over HTTP like a user would.

The process handling is the benchmarks' (bench/stack.py); tests add admin SQL and waiting for a result.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.stack import ROOT
from bench.stack import CdpProcess as _CdpProcess

__all__ = ["ROOT", "CdpProcess", "cdp_cli"]


class CdpProcess(_CdpProcess):
    def __init__(self, bootstrap: str, data_dir: Path, topic_prefix: str, parts: str = "run", **env: str) -> None:
        super().__init__(bootstrap, data_dir, topic_prefix, parts, **{"CDP_LOG_LEVEL": "INFO", **env})

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def sql(self, query: str) -> list[list[Any]]:
        r = httpx.post(f"{self.url}/v1/sql", json={"query": query}, headers=self.admin_headers(), timeout=60)
        assert r.status_code == 200, r.text
        rows: list[list[Any]] = r.json()["rows"]
        return rows

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


def cdp_cli(cdp: CdpProcess, *args: str, cli_dir: Path | None = None, timeout: float = 180) -> str:
    """The `cdp` command as a user runs it beside the service (its own data folder, never the service's chDB
    store); returns stdout, asserting success."""
    env = {**cdp.env, "CDP_DATA_DIR": str(cli_dir or cdp.data_dir.parent / "cli-data")}
    env.pop("CDP_CLICKHOUSE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "cdp.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"cdp {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout
