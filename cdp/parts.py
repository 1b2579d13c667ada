"""The long-running parts of a `cdp` process, each an async context manager: entering starts it, leaving stops it.

The runner enters the parts a role needs into one ``AsyncExitStack``, in the order they depend on each other;
the stack leaves them in reverse, which is the order that loses nothing (cdp/runner.py says which). A part with a
blocking ``start()``/``stop()`` (the Kafka followers, the sink, the audience evaluator) is wrapped by
:func:`running`, which calls both in a worker thread so the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeVar

import uvicorn
from fastapi import FastAPI

from api.fastpath import LookupFastPath
from cdp import collectors
from cdp.analyst import analyst_sql
from identity.rules import IdentityRules
from schemas.settings import Settings
from sinks.analyst import AnalystSql
from sinks.clickhouse import ClickHouse
from sinks.migrate import migrate
from sinks.retention import Retention
from streams.producer import AsyncProducer

if TYPE_CHECKING:
    from streams.app import StitchWorker

log = logging.getLogger("cdp")


class Part(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


P = TypeVar("P", bound=Part)


@contextlib.asynccontextmanager
async def running(part: P) -> AsyncIterator[P]:
    """A part with blocking start and stop; a part whose start failed is not stopped (it never ran)."""
    await asyncio.to_thread(part.start)
    try:
        yield part
    finally:
        await asyncio.to_thread(part.stop)


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


@contextlib.asynccontextmanager
async def opened(open_part: Callable[[], C]) -> AsyncIterator[C]:
    """A part that is opened (a connection, a pool of them) and closed, both in a worker thread."""
    part = await asyncio.to_thread(open_part)
    try:
        yield part
    finally:
        await asyncio.to_thread(part.close)


@contextlib.asynccontextmanager
async def clickhouse_store(settings: Settings) -> AsyncIterator[ClickHouse]:
    """The ClickHouse connection (the embedded chDB store, or a server), schema migrated before anyone uses it."""
    async with opened(lambda: ClickHouse(settings.clickhouse_url, settings.clickhouse_database)) as ch:
        applied = await asyncio.to_thread(migrate, ch, retention=Retention.of(settings))
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        yield ch


def analyst_engine(settings: Settings) -> contextlib.AbstractAsyncContextManager[AnalystSql]:
    """Analyst SQL (sinks/analyst.py): guarded, limited engine clients of its own, for POST /v1/sql."""
    return opened(lambda: analyst_sql(settings))


@contextlib.asynccontextmanager
async def durable_producer(settings: Settings) -> AsyncIterator[AsyncProducer]:
    """The producer that answers only after the broker acknowledged; closing flushes what was accepted."""
    producer = AsyncProducer(settings.kafka_bootstrap)
    try:
        yield producer
    finally:
        undelivered = await asyncio.to_thread(producer.close)
        if undelivered:
            log.error("%d accepted events could not be delivered", undelivered)


@contextlib.asynccontextmanager
async def stream_workers(settings: Settings, rules: IdentityRules) -> AsyncIterator[StitchWorker]:
    """The stitch worker (streams/app.py: the Faust app and the stitcher); stopping it commits what it processed."""
    # Imported here so that only a process running workers pays for Faust (its import time and memory): a
    # collector or API process never does.
    from streams.app import create_app as create_faust_app

    app = create_faust_app(settings, rules)
    try:
        await app.start()
        yield app
    finally:
        with contextlib.suppress(Exception):
            await app.stop()


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal capture: the runner owns SIGTERM/SIGINT and stops the parts in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def http_server(
    app: FastAPI | LookupFastPath, settings: Settings, sockets: list[socket.socket] | None
) -> AsyncIterator[None]:
    """uvicorn serving ``app`` until the part is left; leaving stops taking requests and finishes those under way."""
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=10,
        http="httptools",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=sockets))
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if task.done():
            task.result()
            raise SystemExit(f"HTTP server did not start on port {settings.http_port}")
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task


@contextlib.asynccontextmanager
async def collector_processes(count: int, port: int, stop_within_s: float) -> AsyncIterator[None]:
    """``count`` more `cdp collector` processes on the same port (cdp/collectors.py)."""
    children = collectors.start_children(count, port)
    try:
        yield
    finally:
        await asyncio.to_thread(collectors.stop_children, children, stop_within_s)
