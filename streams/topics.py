"""Topic names and their creation. The project creates its topics itself (admin client), with partition
counts and durability from settings, so `auto.create.topics.enable` is never relied upon."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import overload

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from schemas.settings import CHANNELS, Settings


class _Name:
    """A topic name under the prefix: ``Topics("cdp").merges`` is ``cdp.merges``."""

    def __init__(self, suffix: str, doc: str = "") -> None:
        self.suffix = suffix
        self.__doc__ = doc

    @overload
    def __get__(self, obj: None, owner: type) -> _Name: ...
    @overload
    def __get__(self, obj: Topics, owner: type) -> str: ...
    def __get__(self, obj: Topics | None, owner: type) -> _Name | str:
        return self if obj is None else f"{obj.prefix}{self.suffix}"


@dataclass(frozen=True)
class Topics:
    prefix: str

    def raw(self, channel: str) -> str:
        """Events accepted by the collector or import, one topic per channel."""
        return f"{self.prefix}.events.{channel}"

    @property
    def raw_all(self) -> list[str]:
        return [self.raw(c) for c in CHANNELS]

    deadletter = _Name(".deadletter")
    identity_ops = _Name(".identity.ops", "Messages between identity-graph nodes, keyed by node (identifier) key.")
    identity_nodes = _Name(
        "-stitch-identity-nodes-changelog",
        "Compacted changelog of the identity graph's node states, keyed by node, on the node's partition. The "
        "name is the one Faust gave the changelog of the table these states lived in before, so a store "
        "written by earlier versions is read as it is.",
    )
    identity_owners = _Name(
        ".identity.owners",
        "Carries no records: the stitch workers' Faust consumer group assigns its partitions, and the worker "
        "assigned partition p owns partition p of the identity graph (its messages, node states and raw "
        "events).",
    )
    stitched = _Name(".events.stitched", "Events carrying their profile_id, for the events sink.")
    identities = _Name(".identities")
    merges = _Name(".merges")
    refusals = _Name(".identity.refusals")
    audience_changes = _Name(
        ".audience.changes", "Entered/exited audience changes, for activation systems (DSPs, e-mail tools)."
    )
    sources = _Name(".sources", "Compacted: write key -> source definition. Every collector follows it.")
    audiences = _Name(".audiences", "Compacted: audience id -> definition (tombstone on delete).")
    sources_status = _Name(
        ".sources.status",
        "Compacted: (source, reporting process) -> status of a pull source (streams/source_status.py).",
    )

    privacy_ledger = _Name(
        ".privacy.ledger",
        "Compacted: keyed hash of an identifier -> its privacy state (suppressed, erased): streams/privacy.py.",
    )
    regulations = _Name(
        ".privacy.regulations",
        "Compacted: regulation id -> its state and audit trail (no personal data): streams/privacy.py.",
    )
    install = _Name(
        ".install",
        "Compacted: choices made once for the whole install that every worker must share (how profile ids are "
        "derived: streams/profile_scheme.py).",
    )

    def cdc_prefix(self, source: str) -> str:
        """Debezium's topic prefix for a database source; its table topics are ``PREFIX.SCHEMA.TABLE``."""
        return f"{self.prefix}.cdc.{source}"


def topics_for(settings: Settings) -> Topics:
    return Topics(settings.topic_prefix)


def ensure_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create missing topics; existing ones are left alone (idempotent)."""
    t = topics_for(settings)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    p, r = settings.topic_partitions, settings.topic_replication
    durable = {"min.insync.replicas": str(settings.topic_min_insync)}
    compacted = {**durable, "cleanup.policy": "compact"}
    # Compacted topics whose keys or values can name a person: erased values leave the disk within a bound.
    personal = {**compacted, **settings.purge_configs()}
    wanted = [NewTopic(name, p, r, config=durable) for name in t.raw_all]
    wanted += [
        NewTopic(t.deadletter, p, r, config={**durable, "retention.ms": str(30 * 86400_000)}),
        NewTopic(t.identity_ops, p, r, config=durable),
        NewTopic(t.identity_nodes, p, r, config=personal),
        NewTopic(t.identity_owners, p, r, config=durable),
        NewTopic(t.stitched, p, r, config=durable),
        # Compacted: the latest profile per identifier is what the serving index rebuilds from.
        NewTopic(t.identities, p, r, config=personal),
        NewTopic(t.merges, p, r, config=durable),
        NewTopic(t.refusals, p, r, config=durable),
        # Compacted by (audience, member): consumers see every change; a restarted index reads current state.
        NewTopic(t.audience_changes, p, r, config=personal),
        NewTopic(t.sources, 1, r, config=compacted),
        NewTopic(t.audiences, 1, r, config=compacted),
        NewTopic(t.sources_status, 1, r, config=compacted),
        NewTopic(t.privacy_ledger, 1, r, config=personal),
        NewTopic(t.regulations, 1, r, config=personal),
        NewTopic(t.install, 1, r, config=compacted),
    ]
    _create(admin, wanted, timeout)


def ensure_topic(settings: Settings, name: str, *, compacted: bool = False, timeout: float = 30.0) -> None:
    """One topic of our own beside the fixed ones (a database source's change topic), with our durability; compacted,
    it holds rows of a table (people, maybe), with the purge bounds."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    config = {"min.insync.replicas": str(settings.topic_min_insync)}
    if compacted:
        config.update({"cleanup.policy": "compact", **settings.purge_configs()})
    topic = NewTopic(name, settings.topic_partitions, settings.topic_replication, config=config)
    _create(admin, [topic], timeout)


# A cluster that has just started answers these while its brokers register and elect a controller, and
# librdkafka fails a request in flight on a bootstrap connection it retires once it has learned the brokers.
_PASSING = {
    KafkaError._DESTROY_BROKER,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_CONTROLLER,
    KafkaError.INVALID_REPLICATION_FACTOR,
}


def _create(admin: AdminClient, wanted: list[NewTopic], timeout: float) -> None:
    """Create those of ``wanted`` that do not exist, retrying passing errors until ``timeout`` has run out.

    A topic another process creates meanwhile counts as created."""
    deadline = time.monotonic() + timeout
    while True:
        existing = set(admin.list_topics(timeout=timeout).topics)
        missing = [nt for nt in wanted if nt.topic not in existing]
        if not missing:
            return
        failed: dict[str, KafkaError] = {}
        for name, fut in admin.create_topics(missing, operation_timeout=timeout).items():
            try:
                fut.result(timeout)
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    failed[name] = err
        if not failed:
            return
        name, err = next(iter(failed.items()))
        if time.monotonic() >= deadline or not (err.retriable() or err.code() in _PASSING):
            raise RuntimeError(f"could not create topic {name}: {err}")
        time.sleep(0.5)
