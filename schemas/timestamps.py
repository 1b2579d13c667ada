"""One timestamp parser for the whole pipeline (workers and sinks read the same enriched events)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_ts(value: Any) -> datetime:
    """ISO-8601 (with Z) or epoch milliseconds -> aware UTC datetime; missing -> now."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str) and value:
        dt = datetime.fromisoformat(value)  # since Python 3.11 it reads a trailing Z as UTC
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return datetime.now(UTC)
