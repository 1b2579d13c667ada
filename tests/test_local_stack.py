"""The command-line tools find a local stack from its run file, and fail fast, in one line, when nothing answers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from bench.stack import ROOT, free_port
from cdp.local_stack import local_settings, remove_run_file, run_file, write_run_file
from schemas.settings import Settings


def test_a_command_finds_the_running_stack_from_its_run_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_DATA_DIR", str(tmp_path))
    for name in ("CDP_KAFKA_BOOTSTRAP", "CDP_HTTP_PORT", "CDP_TOPIC_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    write_run_file(Settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:19092", http_port=18080))
    found = local_settings()
    assert (found.kafka_bootstrap, found.http_port) == ("127.0.0.1:19092", 18080)
    monkeypatch.setenv("CDP_KAFKA_BOOTSTRAP", "kafka:9092")  # the environment wins
    assert local_settings().kafka_bootstrap == "kafka:9092"
    monkeypatch.delenv("CDP_KAFKA_BOOTSTRAP")
    gone = orjson.loads(run_file(Settings()).read_bytes()) | {"pid": 2**22 + 12345}  # no such process
    run_file(Settings()).write_bytes(orjson.dumps(gone))
    assert local_settings().kafka_bootstrap == Settings().kafka_bootstrap
    remove_run_file(Settings())  # not this process's file: kept
    assert run_file(Settings()).exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sources", "list"], "cdp sources list: Kafka at 127.0.0.1:1 is not reachable"),
        (["sql", "SELECT 1"], "cdp sql: the service at http://127.0.0.1:"),
    ],
)
def test_an_unreachable_stack_fails_within_seconds_in_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    env = {"CDP_DATA_DIR": str(tmp_path), "CDP_KAFKA_BOOTSTRAP": "127.0.0.1:1", "CDP_HTTP_PORT": str(free_port())}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "cdp.cli", *args], env={"PATH": "/usr/bin:/bin", **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert time.monotonic() - started < 15
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr
