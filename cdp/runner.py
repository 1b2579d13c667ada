"""Runs the parts of the pipeline in one process and stops them in the order that loses nothing.

`cdp run` = collector + worker (the stitch worker and the ClickHouse sinks) + query API, sharing one embedded
chDB store (a chDB folder can be opened by one process only). `cdp collector`, `cdp worker`, `cdp api` run the
parts apart, for scale-out against a ClickHouse server; every role composes the same parts (cdp/parts.py).

Start order, each part after what it uses: ClickHouse store (migrated), analyst SQL engine, producer, privacy
ledger, regulations (their log and processor), audience definitions, serving index, sink, profile rollup, audience
evaluator, retention marker, stitch worker, sources, source status, pull sources, HTTP server, extra collector
processes. On SIGTERM or SIGINT the stack stops them in reverse: stop taking requests, then the pull sources (they
finish their batch), the stitch worker (it commits its last batch), the evaluator, the rollup, the sink (flush and
commit), the regulations (what is not done is marked interrupted), the followers, the producer (everything answered
200 is in Kafka), the analyst engine, and the store last. A shutdown deadline bounds the whole stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from api.app import create_app as create_http_app
from api.deps import Services
from api.fastpath import LookupFastPath
from cdp import collectors, parts
from cdp.local_stack import remove_run_file, write_run_file
from cdp.logs import configure as configure_logging
from cdp.logs import log_tasks
from identity.rules import IdentityRules
from identity.subject_hash import SubjectHasher
from schemas.settings import CHANNELS, Settings
from sinks.audience_eval import AudienceEvaluator
from sinks.clickhouse import ClickHouse, StoreInUse
from sinks.profile_rollup import ProfileRollup
from sinks.regulations import RegulationProcessor
from sinks.retention import IdentifiedMarker
from sinks.rows import IDENTITY_COLUMNS, MERGE_COLUMNS, REFUSAL_COLUMNS, identity_row, merge_row, refusal_row
from sinks.writer import KafkaSink, Route
from streams.audiences import AudienceDefinitions
from streams.live import LiveTail
from streams.node_erasure import NodeEraser
from streams.pipeline_figures import PipelineFigures
from streams.privacy import PrivacyLedger, RegulationLog
from streams.producer import AsyncProducer
from streams.pull import PullSources
from streams.serving import ServingIndex
from streams.source_status import SourceStats, StatusPublisher, reporter_name
from streams.sources import SourceRegistry, new_source, publish_source
from streams.topics import ensure_topics, topics_for

log = logging.getLogger("cdp")
PARTS = frozenset({"collector", "worker", "api"})
DEFAULT_SOURCES = {"online": "web", "mobile": "app", "offline": "store"}


@dataclass(frozen=True)
class Roles:
    """What this process runs, from the command (`cdp run` is all three) and CDP_WORKER_SINKS."""

    collector: bool
    worker: bool
    api: bool
    sinks: bool  # the worker also writes ClickHouse and evaluates audiences

    @classmethod
    def of(cls, names: frozenset[str], settings: Settings) -> Roles:
        worker = "worker" in names
        return cls("collector" in names, worker, "api" in names, worker and settings.worker_sinks)

    @property
    def clickhouse(self) -> bool:
        return self.api or self.sinks

    @property
    def http(self) -> bool:
        return self.collector or self.api

    @property
    def collector_only(self) -> bool:
        return self.collector and not (self.worker or self.api)

    def names(self) -> list[str]:
        return [name for name in ("api", "collector", "worker") if getattr(self, name)]


def kafka_probe(bootstrap: str) -> Callable[[], bool]:
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
        t.merges: Route("merges_store", MERGE_COLUMNS, merge_row),
        t.refusals: Route("identity_refusals", REFUSAL_COLUMNS, refusal_row),
    }


def ensure_default_sources(registry: SourceRegistry, producer: AsyncProducer, topic: str) -> None:
    """One source per channel on first start, so `make run` has write keys to print."""
    have = {s.channel for s in registry.all() if s.kind == "sdk"}
    for channel in CHANNELS:
        if channel not in have:
            source = new_source(DEFAULT_SOURCES[channel], channel)
            publish_source(producer, topic, source)
            registry.wait_for(source.write_key)


def banner(settings: Settings, registry: SourceRegistry | None, roles: Roles) -> str:
    url = f"http://{settings.http_host}:{settings.http_port}"
    lines = [f"cdp is running ({', '.join(roles.names())})", f"  collector URL : {url}"]
    if registry is not None:
        for channel in CHANNELS:
            first = next((s for s in registry.all() if s.channel == channel and s.kind == "sdk"), None)
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


async def start_parts(stack: contextlib.AsyncExitStack, settings: Settings, roles: Roles) -> Services:
    """Enters this role's parts into ``stack`` in start order (see the module docstring) and returns what the
    HTTP routes are given."""
    enter = stack.enter_async_context
    await asyncio.to_thread(ensure_topics, settings)
    services = Services(settings, topics_for(settings), kafka_ready=kafka_probe(settings.kafka_bootstrap))
    rules = services.rules = await asyncio.to_thread(
        IdentityRules.load, str(settings.identity_rules) if settings.identity_rules else None
    )
    ch = await enter(parts.clickhouse_store(settings)) if roles.clickhouse else None
    if roles.api:
        services.analyst = await enter(parts.analyst_engine(settings))
    producer = services.producer = await enter(parts.durable_producer(settings))
    if roles.http or roles.worker:  # the collectors' and the pull sources' suppression, the regulations
        ledger = PrivacyLedger(
            settings.kafka_bootstrap, services.topics.privacy_ledger, SubjectHasher(settings.privacy_key)
        )
        services.ledger = await enter(parts.running(ledger))
    if ch is not None and roles.api:
        await start_privacy_parts(stack, ch, producer, services)
    if ch is not None:
        await start_audience_parts(stack, roles, rules, ch, producer, services)
    if roles.worker:
        await enter(parts.stream_workers(settings, rules))
    if roles.collector or roles.worker:
        registry = await enter(parts.running(SourceRegistry(settings.kafka_bootstrap, services.topics.sources)))
        await start_source_parts(stack, roles, registry, services)
    if roles.http:
        await start_http(stack, roles, services)
    return services


async def start_source_parts(
    stack: contextlib.AsyncExitStack, roles: Roles, registry: SourceRegistry, services: Services
) -> None:
    """The sources: the collector's write keys; the status of this process's pull sources (webhook deliveries
    in a collector, database and folder sources in a worker), and the worker's pull sources themselves."""
    enter = stack.enter_async_context
    settings, topics, producer = services.settings, services.topics, services.producer
    assert producer is not None
    if roles.collector:
        await asyncio.to_thread(ensure_default_sources, registry, producer, topics.sources)
        services.sources = registry
    stats = services.source_stats = SourceStats(reporter_name("worker" if roles.worker else "collector"))
    publisher = StatusPublisher(stats, settings.kafka_bootstrap, topics.sources_status, settings.source_status_s)
    await enter(parts.running(publisher))
    if roles.worker:
        # Left before the agents (the stack is left in reverse): what it produced is then stitched, or read
        # again at the next start.
        assert services.rules is not None
        pull = PullSources(settings, topics, registry, stats, services.rules, services.ledger)
        await enter(parts.running(pull))


async def start_privacy_parts(
    stack: contextlib.AsyncExitStack, ch: ClickHouse, producer: AsyncProducer, services: Services
) -> None:
    """The regulations (query API): their log, and the processor that runs them on an engine client of its own, so
    an erasure's mutations never hold up the API's queries."""
    enter = stack.enter_async_context
    assert services.ledger is not None
    log = services.regulation_log = await enter(
        parts.running(RegulationLog(services.settings.kafka_bootstrap, services.topics.regulations))
    )
    processor_ch = await enter(parts.opened(ch.sibling))
    settings = services.settings
    nodes = NodeEraser(settings.kafka_bootstrap, services.topics, settings.topic_partitions)
    processor = RegulationProcessor(processor_ch, producer, services.ledger, log, services.topics, nodes)
    services.regulations = await enter(parts.running(processor))


async def start_audience_parts(
    stack: contextlib.AsyncExitStack,
    roles: Roles,
    rules: IdentityRules,
    ch: ClickHouse,
    producer: AsyncProducer,
    services: Services,
) -> None:
    """The parts over ClickHouse: definitions, and the serving index (query API), the sink and the evaluator
    (worker with sinks)."""
    enter = stack.enter_async_context
    settings, topics = services.settings, services.topics
    definitions = await enter(parts.running(AudienceDefinitions(settings.kafka_bootstrap, topics.audiences)))
    index = None
    if roles.api:
        index = ServingIndex(settings.kafka_bootstrap, topics.identities, topics.audience_changes)
        await enter(parts.running(index))
        services.ch, services.audiences, services.index = ch, definitions, index
        services.id_types = frozenset({"profile_id", *rules.types})
        services.live = await enter(
            parts.running(LiveTail(settings.kafka_bootstrap, topics.raw_all, topics.deadletter))
        )
        services.figures = PipelineFigures(settings.kafka_bootstrap, topics, CHANNELS)
    if not roles.sinks:
        return
    sink = KafkaSink(
        ch,
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}-sink",
        sink_routes(settings),
        settings.sink_batch_rows,
        settings.sink_flush_s,
        writers=settings.sink_writers,
    )
    await enter(parts.running(sink))
    # The rollup and the evaluator have engine clients of their own: their rounds over the events never hold up
    # the API's queries on `ch`, as the sink's writers have theirs.
    rollup_ch = await enter(parts.opened(ch.sibling))
    await enter(parts.running(ProfileRollup(rollup_ch, settings.profile_rollup_s)))
    evaluator_ch = await enter(parts.opened(ch.sibling))
    evaluator = AudienceEvaluator(
        evaluator_ch,
        producer,
        definitions,
        topics.audience_changes,
        lambda: sink.rows_written,
        refresh_s=settings.audience_refresh_s,
        window_refresh_s=settings.audience_window_refresh_s,
        on_change=index.apply_change if index is not None else None,
    )
    await enter(parts.running(evaluator))
    # The retention's marking of newly identified cookies (sinks/retention.py): a mutation now and then, on a client
    # of its own like the evaluator's.
    marker_ch = await enter(parts.opened(ch.sibling))
    await enter(parts.running(IdentifiedMarker(marker_ch, settings.retention_mark_s)))


async def start_http(stack: contextlib.AsyncExitStack, roles: Roles, services: Services) -> None:
    """The HTTP server; a lone collector with CDP_COLLECTOR_PROCESSES > 1 shares its port with more processes."""
    settings = services.settings
    app = create_http_app(services, collector=roles.collector, query_api=roles.api)
    http = LookupFastPath(app, services) if roles.api else app
    shared = roles.collector_only and (settings.collector_processes > 1 or collectors.is_child())
    sockets = [collectors.reuse_port_socket(settings.http_host, settings.http_port)] if shared else None
    await stack.enter_async_context(parts.http_server(http, settings, sockets))
    if sockets is not None and not collectors.is_child():
        port = sockets[0].getsockname()[1]
        more = parts.collector_processes(settings.collector_processes - 1, port, settings.shutdown_timeout_s / 2)
        await stack.enter_async_context(more)


def on_stop_signals(stop: asyncio.Event, deadline: ShutdownDeadline) -> None:
    """The runner, not uvicorn or Faust, owns SIGTERM/SIGINT; SIGUSR1 dumps where every task waits."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        stop.set()
        deadline.arm()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    loop.add_signal_handler(signal.SIGUSR1, log_tasks)


async def serve(settings: Settings, names: frozenset[str] = PARTS) -> int:
    settings.ensure_tokens()
    roles = Roles.of(names, settings)
    if settings.collector_processes > 1 and not roles.collector_only:
        log.warning("CDP_COLLECTOR_PROCESSES applies to `cdp collector` only; this process runs one")
    stop = asyncio.Event()
    deadline = ShutdownDeadline(settings.shutdown_timeout_s)
    on_stop_signals(stop, deadline)
    async with contextlib.AsyncExitStack() as stack:
        try:
            services = await start_parts(stack, settings, roles)
            if not collectors.is_child():
                print(banner(settings, services.sources, roles), flush=True)
                if roles.http:  # where `cdp sql`, `cdp sources` and `cdp import` find this stack
                    write_run_file(settings)
                    stack.callback(remove_run_file, settings)
            tune_gc()
            await stop.wait()
            log.info("stopping")
        finally:
            deadline.arm()  # from here on the process ends within the deadline, whatever a part does
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

    Why: the Kafka clients retry for ever when the broker is gone, and a chDB insert can wait on a
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


def run(settings: Settings, names: frozenset[str] = PARTS) -> int:
    """Exit status 0 after a clean stop; 2, with one line and no traceback, when the store is held elsewhere."""
    configure_logging(settings.log_level)
    try:
        return asyncio.run(serve(settings, names))
    except StoreInUse as exc:
        print(f"cdp: {exc}", file=sys.stderr, flush=True)
        return 2
