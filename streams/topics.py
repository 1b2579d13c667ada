"""Topic names and their creation. The project creates its topics itself (admin client), with partition
counts and durability from settings, so `auto.create.topics.enable` is never relied upon."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from schemas.settings import CHANNELS, Settings


@dataclass(frozen=True)
class Topics:
    prefix: str

    def raw(self, channel: str) -> str:
        """Events accepted by the collector or import, one topic per channel."""
        return f"{self.prefix}.events.{channel}"

    @property
    def raw_all(self) -> list[str]:
        return [self.raw(c) for c in CHANNELS]

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}.deadletter"

    @property
    def identity_ops(self) -> str:
        """Messages between identity-graph nodes, keyed by node (identifier) key."""
        return f"{self.prefix}.identity.ops"

    @property
    def identity_nodes(self) -> str:
        """Compacted changelog of the identity graph's node states, keyed by node, on the node's partition.

        The name is the one Faust gave the changelog of the table these states lived in before, so a store
        written by earlier versions is read as it is."""
        return f"{self.prefix}-stitch-identity-nodes-changelog"

    @property
    def identity_owners(self) -> str:
        """Carries no records: the stitch workers' Faust consumer group assigns its partitions, and the worker
        assigned partition p owns partition p of the identity graph (its messages, node states and raw events)."""
        return f"{self.prefix}.identity.owners"

    @property
    def stitched(self) -> str:
        """Events carrying their profile_id, for the events sink."""
        return f"{self.prefix}.events.stitched"

    @property
    def identities(self) -> str:
        return f"{self.prefix}.identities"

    @property
    def merges(self) -> str:
        return f"{self.prefix}.merges"

    @property
    def refusals(self) -> str:
        return f"{self.prefix}.identity.refusals"

    @property
    def audience_changes(self) -> str:
        """Entered/exited audience changes, for activation systems (DSPs, e-mail tools)."""
        return f"{self.prefix}.audience.changes"

    @property
    def sources(self) -> str:
        """Compacted: write key -> source definition. Every collector follows it."""
        return f"{self.prefix}.sources"

    @property
    def audiences(self) -> str:
        """Compacted: audience id -> definition (tombstone on delete)."""
        return f"{self.prefix}.audiences"

    @property
    def sources_status(self) -> str:
        """Compacted: (source, reporting process) -> status of a pull source (streams/source_status.py)."""
        return f"{self.prefix}.sources.status"

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
    wanted = [NewTopic(name, p, r, config=durable) for name in t.raw_all]
    wanted += [
        NewTopic(t.deadletter, p, r, config={**durable, "retention.ms": str(30 * 86400_000)}),
        NewTopic(t.identity_ops, p, r, config=durable),
        NewTopic(t.identity_nodes, p, r, config=compacted),
        NewTopic(t.identity_owners, p, r, config=durable),
        NewTopic(t.stitched, p, r, config=durable),
        # Compacted: the latest profile per identifier is what the serving index rebuilds from.
        NewTopic(t.identities, p, r, config=compacted),
        NewTopic(t.merges, p, r, config=durable),
        NewTopic(t.refusals, p, r, config=durable),
        # Compacted by (audience, member): consumers see every change; a restarted index reads current state.
        NewTopic(t.audience_changes, p, r, config=compacted),
        NewTopic(t.sources, 1, r, config=compacted),
        NewTopic(t.audiences, 1, r, config=compacted),
        NewTopic(t.sources_status, 1, r, config=compacted),
    ]
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [nt for nt in wanted if nt.topic not in existing]
    if not missing:
        return
    for name, fut in admin.create_topics(missing, operation_timeout=timeout).items():
        try:
            fut.result(timeout)
        except Exception as exc:  # a concurrent creator won the race: fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {name}: {exc}") from exc


def ensure_topic(settings: Settings, name: str, *, compacted: bool = False, timeout: float = 30.0) -> None:
    """One topic of our own beside the fixed ones (a database source's change topic), with our durability."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    config = {"min.insync.replicas": str(settings.topic_min_insync)}
    if compacted:
        config["cleanup.policy"] = "compact"
    if name in admin.list_topics(timeout=timeout).topics:
        return
    topic = NewTopic(name, settings.topic_partitions, settings.topic_replication, config=config)
    for fut in admin.create_topics([topic], operation_timeout=timeout).values():
        try:
            fut.result(timeout)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {name}: {exc}") from exc
