"""Pull sources at run time: the part of `cdp worker` (and `cdp run`) that keeps them flowing.

It follows the source definitions (the compacted sources topic) and runs one thread per pull source:

* ``postgres``: reads the source's Debezium topic (written by Kafka Connect, streams/connect.py), maps each
  row change to a Segment event (schemas/cdc.py) and produces it to the source's raw channel topic through
  the offline path (streams/ingest.py); what cannot be mapped or validated goes to the dead-letter topic.
  Offsets are committed only after the broker acknowledged the batch: a crash re-reads, and the re-read
  changes carry the same messageIds.
* ``folder``: imports the files dropped into a directory (streams/folder.py) with `cdp import`'s code.

Both leave out the events of suppressed people (the privacy ledger, as the collector does), counted in
``cdp_events_suppressed_total``.

Each source runs in a consumer group of its own, so several workers share a database source's partitions.
The logic is in the pure modules; this one only moves records and counts them (streams/source_status.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from identity.rules import IdentityRules
from schemas.cdc import TableMapping, change_event, parse_change
from schemas.mapping import MappingError
from schemas.settings import Settings
from streams.connect import ConnectClient, ConnectError, connector_state
from streams.folder import DropFolder, Outcome, process_once, rejects_path
from streams.ingest import UnreadableFile, deadletter_record, import_file, prepare, suppressed_records
from streams.keys import raw_event_record
from streams.privacy import PrivacyLedger, Produced
from streams.producer import CHECKED_HEADER, AsyncProducer
from streams.source_status import SourceStats
from streams.sources import Source, SourceRegistry
from streams.topics import Topics

log = logging.getLogger(__name__)
PULL_KINDS = ("postgres", "folder")


@dataclass(frozen=True)
class RunnerDeps:
    """What every source runner is given besides its source."""

    stats: SourceStats
    settings: Settings
    topics: Topics
    rules: IdentityRules
    ledger: PrivacyLedger | None = None  # a suppressed person's events are left out (streams/ingest.py)


class _Runner:
    """A thread that runs one source until stopped; errors are counted and retried, never fatal."""

    def __init__(self, source: Source, deps: RunnerDeps) -> None:
        self.source = source
        self.stats, self.settings, self.topics, self.rules = deps.stats, deps.settings, deps.topics, deps.rules
        self.ledger = deps.ledger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name=f"pull-{source.name}", daemon=True)

    def start(self) -> _Runner:
        self._thread.start()
        return self

    def _guarded(self) -> None:
        while not self._stop.is_set():
            try:
                self.run()
                return
            except Exception as exc:
                log.exception("source %s failed; retrying", self.source.name)
                self.stats.error(self.source.name, self.source.kind, f"{type(exc).__name__}: {exc}")
                self.stats.state(self.source.name, self.source.kind, "failed")
                self._stop.wait(5)

    def run(self) -> None:
        raise NotImplementedError

    def signal_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class CdcRunner(_Runner):
    """A database source: its Debezium topic -> events in its raw channel topic."""

    def __init__(self, source: Source, deps: RunnerDeps) -> None:
        super().__init__(source, deps)
        self.mapping = TableMapping.from_yaml(source.config["mapping_yaml"])
        self.table: str = source.config["table"]
        self.cdc_topic: str = source.config["topic"]
        self.connector: str = source.config["connector"]

    def run(self) -> None:
        producer = AsyncProducer(self.settings.kafka_bootstrap)
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "group.id": f"{self.settings.topic_prefix}-cdc-{self.source.name}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
                "topic.metadata.refresh.interval.ms": 2000,
            }
        )
        connect = ConnectClient(self.settings.connect_url, timeout=5)
        consumer.subscribe([self.cdc_topic])
        next_check = 0.0
        try:
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=5000, timeout=0.2)
                batch = [m for m in messages if m.error() is None]
                if batch:
                    self._forward(batch, producer)
                    consumer.commit(asynchronous=False)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.settings.source_status_s
                    self._check(consumer, connect)
        finally:
            consumer.close()
            producer.close()
            connect.close()

    def _forward(self, batch: list[Any], producer: AsyncProducer) -> None:
        received = datetime.now(UTC)
        raw_topic = self.topics.raw(self.source.channel)
        records: list[Produced] = []
        # Of several versions of one event in a batch (a row changed twice, or twice in one transaction, which
        # gives both one commit time) only the last is sent: the store could not tell them apart.
        latest: dict[str, Produced] = {}
        accepted = 0
        for msg in batch:
            key_bytes, value_bytes = msg.key(), msg.value()
            mapped: dict[str, Any] | None = None
            try:
                key = orjson.loads(key_bytes) if key_bytes else None
                change = parse_change(key, orjson.loads(value_bytes) if value_bytes else None)
                if change is None:
                    continue
                mapped = change_event(self.mapping, self.source.name, self.table, change)
                if mapped is None:
                    continue
                event, reason = prepare(mapped, self.source, received, self.rules)
            except (MappingError, orjson.JSONDecodeError) as exc:
                event, reason = None, str(exc)
            if event is None:
                original = {"key": _text(key_bytes), "value": _text(value_bytes), "event": mapped}
                records.append(deadletter_record(self.topics.deadletter, self.source, reason or "", original, received))
                self.stats.error(self.source.name, "postgres", f"{self.table}: {reason}")
                continue
            joined = suppressed_records(self.ledger, event, self.source, self.rules)
            if joined is not None:  # a suppressed person's change: left out, its new identifiers join
                records += joined
                continue
            latest.pop(event["messageId"], None)
            latest[event["messageId"]] = raw_event_record(raw_topic, event, self.rules)  # keyed as the collector
            accepted += 1
        records += latest.values()
        if records:
            producer.send_sync(records, headers=[CHECKED_HEADER])  # validated here (prepare), like the collector
        self.stats.rows(self.source.name, "postgres", accepted)

    def _check(self, consumer: Consumer, connect: ConnectClient) -> None:
        lag = _lag(consumer)
        try:
            state, error = connector_state(connect.status(self.connector))
        except ConnectError as exc:
            state, error = "connect unreachable", str(exc)
        if error:
            self.stats.error(self.source.name, "postgres", error)
        self.stats.state(self.source.name, "postgres", state, lag)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")[:4096]


def _lag(consumer: Consumer) -> int | None:
    """Records on the Debezium topic not yet mapped, over this consumer's partitions: from the committed
    offsets (committed after every batch), since a partition with nothing new since a restart has no position."""
    try:
        assigned = consumer.assignment()
        if not assigned:
            return None
        total = 0
        for tp in consumer.committed(assigned, timeout=2):
            low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=2)
            total += max(0, high - (tp.offset if tp.offset >= 0 else low))
        return total
    except KafkaException:
        return None


class FolderRunner(_Runner):
    """A folder source: files dropped into its directory -> events in its raw channel topic."""

    def __init__(self, source: Source, deps: RunnerDeps) -> None:
        super().__init__(source, deps)
        self.folder = DropFolder(Path(source.config["path"]), self.settings.worker_id)

    def run(self) -> None:
        producer = AsyncProducer(self.settings.kafka_bootstrap)
        try:
            self.folder.prepare()
            for claimed in self.folder.claimed():  # a previous run stopped half-way through these
                outcome = self._import(claimed, producer)
                self._record(self.folder.finish(claimed, outcome), outcome)
            self.stats.state(self.source.name, "folder", "running", 0)
            while not self._stop.wait(self.settings.folder_poll_s):
                for path, outcome in process_once(self.folder, lambda p: self._import(p, producer)):
                    self._record(path, outcome)
                self.stats.state(self.source.name, "folder", "running", self.folder.waiting())
        finally:
            producer.close()

    def _import(self, path: Path, producer: AsyncProducer) -> Outcome:
        try:
            topic = self.topics.raw(self.source.channel)
            result = import_file(path, self.source, topic, producer, rejects_path(path), self.rules, ledger=self.ledger)
        except UnreadableFile as exc:
            return Outcome(0, 0, str(exc))
        return Outcome(result.accepted, result.rejected)

    def _record(self, path: Path, outcome: Outcome) -> None:
        self.stats.rows(self.source.name, "folder", outcome.accepted)
        if outcome.error or outcome.rejected:
            reason = outcome.error or f"{outcome.rejected} rows rejected, see {rejects_path(path).name}"
            self.stats.error(self.source.name, "folder", f"{path.name}: {reason}")
        log.info(
            "folder %s: %s -> %s/ (%d imported, %d rejected)",
            self.source.name,
            path.name,
            path.parent.name,
            outcome.accepted,
            outcome.rejected,
        )


class PullSources:
    """Part: one runner per pull source of the registry, started and stopped as sources come and go."""

    def __init__(
        self,
        settings: Settings,
        topics: Topics,
        registry: SourceRegistry,
        stats: SourceStats,
        rules: IdentityRules,
        ledger: PrivacyLedger | None = None,
    ) -> None:
        self.settings, self.topics, self.registry, self.stats, self.rules = settings, topics, registry, stats, rules
        self._deps = RunnerDeps(stats, settings, topics, rules, ledger)
        self._runners: dict[str, _Runner] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pull-sources", daemon=True)

    def start(self) -> PullSources:
        self._reconcile()
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._reconcile()
            except Exception:
                log.exception("pull sources: could not follow the source definitions")

    def _reconcile(self) -> None:
        wanted = {s.write_key: s for s in self.registry.all() if s.kind in PULL_KINDS}
        for key in [k for k in self._runners if k not in wanted]:
            self._runners.pop(key).stop()
        for key, source in wanted.items():
            if key not in self._runners:
                try:
                    self._runners[key] = self._runner(source).start()
                except (KeyError, MappingError) as exc:  # a broken definition must not stop the others
                    self.stats.error(source.name, source.kind, f"definition: {exc}")
                    self._runners[key] = _Idle(source, self._deps)

    def _runner(self, source: Source) -> _Runner:
        if source.kind == "postgres":
            return CdcRunner(source, self._deps)
        return FolderRunner(source, self._deps)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for runner in self._runners.values():
            runner.signal_stop()  # all at once: each then finishes its batch in parallel
        for runner in self._runners.values():
            runner.stop()
        self._runners.clear()


class _Idle(_Runner):
    def start(self) -> _Runner:
        self.stats.state(self.source.name, self.source.kind, "failed")
        return self

    def stop(self) -> None:
        return None
