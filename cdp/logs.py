"""Logging set-up, and the SIGUSR1 dump of where every asyncio task waits.

The Kafka clients (aiokafka under Faust) retry a lost broker without backoff and log every attempt: thousands
of identical ERROR lines a second during an outage. A filter lets each distinct message template through once
per interval and says how many it held back."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

NOISY = ("aiokafka", "faust", "mode", "kafka", "httpx")  # httpx: every Connect status poll


class RateLimitFilter(logging.Filter):
    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self.interval_s:.0f} s)"
        return True


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    limiter = RateLimitFilter()
    for name in NOISY:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        logger.addFilter(limiter)


def log_tasks() -> None:
    """SIGUSR1: log where every asyncio task waits (what a stalled agent is blocked on)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- {task.get_name()}\n")
        for where in await_chain(task.get_coro()):
            out.write(f"    {where}\n")
    logging.getLogger("cdp").warning("asyncio tasks on SIGUSR1:\n%s", out.getvalue())


def await_chain(coro: Any, limit: int = 40) -> Iterator[str]:
    """The frames a suspended coroutine waits in, outermost first (Task.get_stack only gives the top one).
    Wrappers without a frame (an async generator's ``asend``, a coroutine's ``__await__``) are looked through
    to the generator or coroutine they hold."""
    while coro is not None and limit > 0:
        limit -= 1
        frame = _frame(coro)
        if frame is None:
            inner = next((r for r in gc.get_referents(coro) if _frame(r) is not None), None)
            if inner is None:
                yield repr(coro)[:200]
                return
            coro, frame = inner, _frame(inner)
        yield f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None) or getattr(coro, "gi_yieldfrom", None)


def _frame(obj: Any) -> Any:
    return getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None) or getattr(obj, "gi_frame", None)
