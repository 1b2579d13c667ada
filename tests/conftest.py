"""Session fixtures: the real broker is started once, lazily, only when a test asks for it.

A test that needs the broker is marked ``e2e`` (`make test-unit` runs the others, with no broker and no Maven);
collection refuses an unmarked test that uses the broker, so the split cannot drift."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, Connect, Postgres
from tests.support.service import CdpProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [
        i.nodeid for i in items if "kafka" in getattr(i, "fixturenames", ()) and not i.get_closest_marker("e2e")
    ]
    if unmarked:
        raise pytest.UsageError(f"tests using the broker must be marked e2e: {', '.join(unmarked)}")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("kafka")).start()
    try:
        yield broker
    finally:
        broker.kill()  # its folder is thrown away: a controlled shutdown of thousands of test partitions only waits


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server for the session (wal_level=logical); tests keep to tables of their own."""
    server = Postgres().start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def connect(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connect]:
    """One Kafka Connect worker for the session (its start-up costs seconds); connectors are per test."""
    worker = Connect(tmp_path_factory.mktemp("connect"), kafka.bootstrap, f"c{uuid.uuid4().hex[:8]}").start()
    try:
        yield worker
    finally:
        worker.kill()  # its folder and topics are thrown away: a graceful stop only waits


@pytest.fixture
def topic_prefix() -> str:
    """Each test gets its own topics, so tests never depend on order."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One embedded store for the whole test process (chDB opens one path per process)."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def ch(chdb_url: str):
    """A fresh database per test in the session's embedded store, schema applied."""
    from sinks.clickhouse import ClickHouse
    from sinks.migrate import migrate

    client = ClickHouse(chdb_url, database=f"t_{uuid.uuid4().hex[:12]}")
    migrate(client)
    yield client
    client.command(f"DROP DATABASE IF EXISTS {client.database}")


@pytest.fixture(scope="session")
def shared_cdp(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdpProcess]:
    """One `cdp run` with the default settings for the e2e modules that neither restart it nor change what it
    holds for everybody (a start costs seconds each): their tests keep to identifiers and sources of their own."""
    service = CdpProcess(kafka.bootstrap, tmp_path_factory.mktemp("shared") / "data", f"t{uuid.uuid4().hex[:10]}")
    service.start().wait_ready()
    try:
        yield service
    finally:
        assert service.stop() == 0, service.output()[-3000:]
