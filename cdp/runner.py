"""Runs the parts of the pipeline in one process and stops them in the order that loses nothing.

`cdp run` = collector + worker (Faust agents and ClickHouse sinks) + query API, sharing one embedded chDB
store (a chDB folder can be opened by one process only). `cdp collector`, `cdp worker`, `cdp api` run the
parts apart, for scale-out against a ClickHouse server.

Shutdown on SIGTERM/SIGINT: stop taking requests, flush the producer (everything answered 200 is in Kafka),
stop the Faust agents (they commit what they processed), flush and commit the sinks, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from confluent_kafka.admin import AdminClient

from api.app import create_app as create_http_app
from api.deps import Services
from cdp import collectors
from cdp.analyst import analyst_sql
from cdp.logs import configure as configure_logging
from schemas.settings import CHANNELS, Settings
from sinks.clickhouse import ClickHouse
from sinks.migrate import migrate
from sinks.rows import (
    IDENTITY_COLUMNS,
    MERGE_COLUMNS,
    REFUSAL_COLUMNS,
    identity_row,
    merge_row,
    refusal_row,
)
from sinks.writer import KafkaSink, Route
from streams.producer import AsyncProducer
from streams.sources import SourceRegistry, new_source, publish_source
from streams.topics import ensure_topics, topics_for

log = logging.getLogger("cdp")
PARTS = frozenset({"collector", "worker", "api"})
DEFAULT_SOURCES = {"online": "web", "mobile": "app", "offline": "store"}


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal capture: the runner owns SIGTERM/SIGINT and stops the parts in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def kafka_probe(bootstrap: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def ready() -> bool:
        try:
            admin.list_topics(timeout=2)
            return True
        except Exception:
            return False

    return ready


def sink_routes(settings: Settings) -> dict[str, Route]:
    t = topics_for(settings)
    return {
        t.stitched: Route("events_landing", json=True),
        t.identities: Route("identities_store", IDENTITY_COLUMNS, identity_row),
        t.merges: Route("merges", MERGE_COLUMNS, merge_row),
        t.refusals: Route("identity_refusals", REFUSAL_COLUMNS, refusal_row),
    }


def ensure_default_sources(registry: SourceRegistry, producer: AsyncProducer, topic: str) -> None:
    """One source per channel on first start, so `make run` has write keys to print."""
    have = {s.channel for s in registry.all()}
    for channel in CHANNELS:
        if channel not in have:
            source = new_source(DEFAULT_SOURCES[channel], channel)
            publish_source(producer, topic, source)
            registry.wait_for(source.write_key)


def banner(settings: Settings, registry: SourceRegistry | None, parts: frozenset[str]) -> str:
    url = f"http://{settings.http_host}:{settings.http_port}"
    lines = [f"cdp is running ({', '.join(sorted(parts))})", f"  collector URL : {url}"]
    if registry is not None:
        for channel in CHANNELS:
            first = next((s for s in registry.all() if s.channel == channel), None)
            if first:
                lines.append(f"  write key {channel:<8}: {first.write_key}   (source {first.name!r})")
    lines += [
        f"  admin token   : {settings.admin_token}",
        f"  read token    : {settings.read_token}",
        f"  analyst token : {settings.analyst_token}",
        f"  ClickHouse    : {settings.clickhouse_url}",
        f"  Kafka         : {settings.kafka_bootstrap}",
    ]
    return "\n".join(lines)


def _log_tasks() -> None:
    """SIGUSR1: log where every asyncio task waits (what a stalled agent is blocked on)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- {task.get_name()}\n")
        for where in _await_chain(task.get_coro()):
            out.write(f"    {where}\n")
    log.warning("asyncio tasks on SIGUSR1:\n%s", out.getvalue())


def _await_chain(coro: Any, limit: int = 40) -> Iterator[str]:
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


async def serve(settings: Settings, parts: frozenset[str] = PARTS) -> int:
    settings.ensure_tokens()
    sinks_here = "worker" in parts and settings.worker_sinks
    await asyncio.to_thread(ensure_topics, settings)
    topics = topics_for(settings)
    services = Services(settings=settings, topics=topics, kafka_ready=kafka_probe(settings.kafka_bootstrap))

    stop = asyncio.Event()
    deadline = ShutdownDeadline(settings.shutdown_timeout_s)
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        stop.set()
        deadline.arm()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    loop.add_signal_handler(signal.SIGUSR1, _log_tasks)

    ch: ClickHouse | None = None
    producer: AsyncProducer | None = None
    registry: SourceRegistry | None = None
    faust_app = None
    sink: KafkaSink | None = None
    definitions = index = evaluator = None
    server: _Server | None = None
    server_task: asyncio.Task | None = None
    children: list[Any] = []
    try:
        if "api" in parts or sinks_here:
            ch = ClickHouse(settings.clickhouse_url, settings.clickhouse_database)
            applied = await asyncio.to_thread(migrate, ch, ttl_days=settings.anonymous_ttl_days)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
            services.ch = ch if "api" in parts else None
            if "api" in parts:
                services.analyst = analyst_sql(settings)
        from identity.rules import IdentityRules

        rules = IdentityRules.load(str(settings.identity_rules) if settings.identity_rules else None)
        if parts & {"collector", "api", "worker"}:
            producer = AsyncProducer(settings.kafka_bootstrap)
            services.producer = producer
        if "api" in parts or sinks_here:
            from streams.audiences import AudienceDefinitions

            definitions = await asyncio.to_thread(AudienceDefinitions(settings.kafka_bootstrap, topics.audiences).start)
            services.extra["audiences"] = definitions
        if "api" in parts:
            from streams.serving import ServingIndex

            index = await asyncio.to_thread(
                ServingIndex(settings.kafka_bootstrap, topics.identities, topics.audience_changes).start
            )
            services.extra["index"] = index
            services.extra["id_types"] = {"profile_id", *rules.types}
        if "collector" in parts:
            registry = await asyncio.to_thread(SourceRegistry(settings.kafka_bootstrap, topics.sources).start)
            assert producer is not None
            await asyncio.to_thread(ensure_default_sources, registry, producer, topics.sources)
            services.sources = registry
        if "worker" in parts:
            from streams.app import create_app as create_faust_app

            faust_app = create_faust_app(settings, rules)
            await faust_app.start()
        if sinks_here:
            from sinks.audience_eval import AudienceEvaluator

            assert ch is not None and producer is not None and definitions is not None
            sink = KafkaSink(
                ch,
                settings.kafka_bootstrap,
                f"{settings.topic_prefix}-sink",
                sink_routes(settings),
                settings.sink_batch_rows,
                settings.sink_flush_s,
                writers=settings.sink_writers,
            ).start()
            sink_ref = sink
            evaluator = AudienceEvaluator(
                ch,
                producer,
                definitions,
                topics.audience_changes,
                lambda: sink_ref.rows_written,
                refresh_s=settings.audience_refresh_s,
                window_refresh_s=settings.audience_window_refresh_s,
                on_change=index.apply_change if index is not None else None,
            ).start()
        if parts & {"collector", "api"}:
            http: Any = create_http_app(services, collector="collector" in parts, query_api="api" in parts)
            if "api" in parts:
                from api.fastpath import LookupFastPath

                http = LookupFastPath(http, services)
            config = uvicorn.Config(
                http,
                host=settings.http_host,
                port=settings.http_port,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=10,
                http="httptools",
            )
            server = _Server(config)
            sockets = None
            if parts == {"collector"} and (settings.collector_processes > 1 or collectors.is_child()):
                sockets = [collectors.reuse_port_socket(settings.http_host, settings.http_port)]
            server_task = asyncio.create_task(server.serve(sockets=sockets))
            while not server.started and not server_task.done():
                await asyncio.sleep(0.05)
            if server_task.done():
                server_task.result()
                raise SystemExit(f"HTTP server did not start on port {settings.http_port}")
            if sockets is not None and not collectors.is_child():
                port = sockets[0].getsockname()[1]
                children = collectors.start_children(settings.collector_processes - 1, port)
        if settings.collector_processes > 1 and parts != {"collector"}:
            log.warning("CDP_COLLECTOR_PROCESSES applies to `cdp collector` only; this process runs one")
        if not collectors.is_child():
            print(banner(settings, registry, parts), flush=True)
        tune_gc()
        await stop.wait()
        log.info("stopping")
    finally:
        deadline.arm()
        if children:
            await asyncio.to_thread(collectors.stop_children, children, settings.shutdown_timeout_s / 2)
        if server is not None and server_task is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await server_task
        if registry is not None:
            await asyncio.to_thread(registry.stop)
        if faust_app is not None:
            with contextlib.suppress(Exception):
                await faust_app.stop()
        if sink is not None:
            await asyncio.to_thread(sink.stop)
        for follower in (evaluator, index, definitions):
            if follower is not None:
                await asyncio.to_thread(follower.stop)
        if producer is not None:
            undelivered = await asyncio.to_thread(producer.close)
            if undelivered:
                log.error("%d accepted events could not be delivered", undelivered)
        if services.analyst is not None:
            services.analyst.close()
        if ch is not None:
            ch.close()
    deadline.cancel()
    log.info("stopped cleanly")
    return 0


def tune_gc() -> None:
    """Fewer cyclic garbage collections on the hot paths.

    Events become short-lived dicts by the thousand, and the stitcher keeps many node states alive; with the
    default gen-0 threshold the collector runs every few hundred events and walks the young objects each time.
    Everything built at start-up is frozen out of the collector's view, and a young generation of tens of
    thousands of objects is collected a hundred times less often. Reference counting still frees what has no
    cycle at once."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


class ShutdownDeadline:
    """Exits the process if shutting down takes longer than ``seconds``.

    Why: Faust and the Kafka clients retry for ever when the broker is gone, and a chDB insert can wait on a
    stuck disk; a stop must still end, or supervisors (and the next `make run`) meet a process that keeps a
    core and the chDB folder. Exiting hard loses nothing acknowledged: the collector answered 200 only after
    the broker had the event, and sinks and agents re-read what they had not committed.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        log.error(
            "shutdown did not finish within %.0f s: exiting now (uncommitted work is re-read on restart)", self.seconds
        )
        logging.shutdown()
        os._exit(3)


def run(settings: Settings, parts: frozenset[str] = PARTS) -> int:
    configure_logging(settings.log_level)
    return asyncio.run(serve(settings, parts))
