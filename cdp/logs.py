"""Logging set-up. The Kafka clients (aiokafka under Faust) retry a lost broker without backoff and log every
attempt: thousands of identical ERROR lines a second during an outage. A filter lets each distinct message
template through once per interval and says how many it held back."""

from __future__ import annotations

import logging
import sys
import time

NOISY = ("aiokafka", "faust", "mode", "kafka")


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
