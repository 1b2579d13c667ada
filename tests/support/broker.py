"""A real Kafka broker for the test session, on free loopback ports, stopped even when tests fail."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "kafka" / "broker.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.controller_port = free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Broker:
        subprocess.run([str(SCRIPT), "start", str(self.data_dir), str(self.port), str(self.controller_port)],
                       check=True, timeout=120)
        return self

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", str(self.data_dir)], check=False, timeout=60)
