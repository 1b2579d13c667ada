"""Fixtures of the sinks tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from sinks.clickhouse import ClickHouse
from sinks.migrate import migrate


@pytest.fixture(scope="module")
def module_db(chdb_url: str) -> Iterator[ClickHouse]:
    """One migrated database for a module whose tests only read (the per-test `ch` costs a migration each)."""
    ch = ClickHouse(chdb_url, database=f"t_{uuid.uuid4().hex[:12]}")
    migrate(ch)
    yield ch
    ch.command(f"DROP DATABASE IF EXISTS {ch.database}")
