"""More than one collector process on one port (`CDP_COLLECTOR_PROCESSES`, `cdp collector` only).

A collector is stateless: it validates, enriches and produces, and follows the sources topic for write keys.
One Python process validates on one core (figures: `make bench`, collector stage, and the README), so a busy
host runs several. Every process binds the same address with
SO_REUSEPORT and the kernel spreads new connections over them; no process forwards to another, so one that
dies only loses its own connections, and a client's retry lands on a live one.

The first process starts the others with the same settings and stops them when it stops. They die with it
even when it is killed (PR_SET_PDEATHSIG), so no orphan keeps the port.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time

log = logging.getLogger("cdp")

CHILD_ENV = "CDP_COLLECTOR_CHILD"


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (the kernel balances connections among them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and with
    # proto 0 every answer waits for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def start_children(count: int, port: int) -> list[subprocess.Popen[bytes]]:
    """``count`` more `cdp collector` processes on ``port`` (the first process's actual port)."""
    env = {**os.environ, CHILD_ENV: "1", "CDP_HTTP_PORT": str(port), "CDP_COLLECTOR_PROCESSES": "1"}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "cdp.cli", "collector"],
            env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        for _ in range(count)
    ]


def stop_children(children: list[subprocess.Popen[bytes]], timeout: float) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("collector process %d did not stop in time; killing it", child.pid)
            child.kill()


def is_child() -> bool:
    return os.environ.get(CHILD_ENV) == "1"
