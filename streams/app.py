"""The Faust app: topics, the identity table and the agents that own it.

ingest   raw channel topics -> one Observe per identifier of the event, keyed by identifier (identity.ops)
stitch   identity.ops -> node state in the `identity-nodes` table (RocksDB + compacted changelog),
         messages to neighbour nodes, identifier->profile changes, merges, refusals, stitched events

Agents run with concurrency 1: with more, Faust can commit an offset past a message still being processed
(faust-streaming #606). Outputs are at-least-once (Faust flushes its producer before it commits offsets); the
sinks are idempotent, so a redelivered message is never visible twice. Two Faust defects would break that
after a rebalance and are worked around here: the end of table recovery could drop input records
(`_SeekFirstRecovery`), and the node table is kept co-partitioned with identity.ops explicitly (see the
table's comment).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.tables import TableManager
from faust.tables.recovery import Recovery

from cdp.settings import Settings
from identity.extract import extract_identifiers
from identity.graph import NodeState, Step, handle, message_from_dict, observes_for_event
from identity.rules import IdentityRules
from schemas.timestamps import parse_ts
from schemas.validation import invalid_reason
from streams.topics import topics_for

log = logging.getLogger(__name__)
STITCH_BATCH = 500
STITCH_WITHIN_S = 0.02


class _SeekFirstRecovery(Recovery):
    """Faust's table recovery, with the hand-over to the streams reordered so that no input record is lost.

    faust-streaming 0.15's ``on_recovery_completed`` resumes the stream partitions, seeks them to their
    committed offsets, then resumes flow control, which empties every stream queue. The fetcher runs all the
    while (table recovery started it), so records fetched after the resume sit in a queue when it is emptied,
    and the fetch loop goes on past them: they are never fetched again. Seen in the kill test as raw events
    whose Observes were never produced (a link missing from a chain). Worse, when the hole is one record just
    after the committed offset, ``Consumer._new_offset`` (which tolerates a gap of one there) commits past it,
    so not even a restart brings it back. Here the partitions are sought while they are still paused, the
    queues emptied, and only then are the partitions resumed: everything fetched is delivered.
    """

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        app = self.app
        consumer = app.consumer
        self.log.info("Restore complete!")
        await app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        assignment = consumer.assignment()
        if app.consumer_generation_id != generation_id:
            self.log.warning("Rebalancing again: generation %r, not %r", app.consumer_generation_id, generation_id)
            return
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
        self.completed.set()
        # Empties the stream queues; nothing in them was fetched after the seek, so all of it comes again.
        app.flow_control.resume()
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        consumer.resume_flow()
        await app._fetcher.maybe_start()  # type: ignore[attr-defined]
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")


class _TableManager(TableManager):
    """Faust's table manager, recovering with `_SeekFirstRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = _SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


def rocksdb_options(store_mb: int) -> dict[str, int]:
    """RocksDB memory per table partition, in about ``store_mb``: two write buffers of a quarter each and a block
    cache of half. Faust's defaults (a 2 GiB block cache and three 64 MiB write buffers per partition) let
    a worker's memory grow with the graph for gigabytes; with these the graph lives on disk and the worker's
    memory stays flat (`python -m bench.identity_scale`)."""
    quarter = max(1, store_mb // 4) * 1024 * 1024
    return {"write_buffer_size": quarter, "max_write_buffer_number": 2, "block_cache_size": 2 * quarter}


def create_app(settings: Settings, rules: IdentityRules) -> faust.App:
    t = topics_for(settings)
    datadir = Path(settings.data_dir) / "faust" / settings.worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.topic_prefix}-stitch",
        broker=[f"kafka://{b.strip()}" for b in settings.kafka_bootstrap.split(",")],
        store="rocksdb://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        producer_acks=-1,
        # Batch the many small sends (identity messages, changelog, outputs) into few produce requests.
        producer_linger_ms=5,
        producer_max_batch_size=1_000_000,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        table_standby_replicas=0,
        stream_wait_empty=False,
        TableManager=_TableManager,
    )
    raw_bytes: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    raw = app.topic(*t.raw_all, **raw_bytes)
    ops = app.topic(t.identity_ops, partitions=settings.topic_partitions, **raw_bytes)
    stitched = app.topic(t.stitched, **raw_bytes)
    identities = app.topic(t.identities, **raw_bytes)
    merges = app.topic(t.merges, **raw_bytes)
    refusals = app.topic(t.refusals, **raw_bytes)
    deadletter = app.topic(t.deadletter, **raw_bytes)
    # Values are NodeState dicts, JSON in the changelog (Faust's default value serializer).
    # Co-partitioned with identity.ops by the partition of the event being handled, which the agent sets as
    # Faust's current event for every read and write: a node's state lives in its messages' partition number, in
    # RocksDB and in the changelog, so the worker that owns the partition recovers exactly its nodes. Not
    # `use_partitioner`: that hashes the table's key bytes, JSON ('"email:a@b.c"'), not the raw identity.ops key,
    # so 3 states in 4 went to another changelog partition than their messages' and a worker taking a partition
    # over recovered other nodes' states instead of its own.
    nodes = app.Table(
        "identity-nodes",
        partitions=settings.topic_partitions,
        key_type=str,
        options=rocksdb_options(settings.identity_store_mb),
    )

    async def emit_stitched(event: dict[str, Any], profile_id: str, identity_key: str) -> None:
        event["profileId"] = profile_id
        event["identityKey"] = identity_key
        await stitched.send(key=event["messageId"].encode(), value=orjson.dumps(event))

    @app.agent(raw, concurrency=1)
    async def ingest(stream: faust.StreamT) -> None:
        async for value in stream:
            try:
                event = orjson.loads(value)
            except orjson.JSONDecodeError:
                await deadletter.send(
                    value=orjson.dumps({"reason": "not JSON", "raw": value.decode("utf-8", "replace")})
                )
                continue
            reason = invalid_reason(event)
            if reason:
                await deadletter.send(value=orjson.dumps({"reason": reason, "event": event}))
                continue
            ids = extract_identifiers(event, rules)
            if not ids:
                # Only junk identifiers: the event is kept, attached to no profile.
                await emit_stitched(event, "", "")
                continue
            ts_ms = _event_ms(event)
            for obs in observes_for_event(event, rules, event["messageId"], ts_ms):
                await ops.send(key=obs.node.encode(), value=orjson.dumps(obs.to_dict()))

    @app.agent(ops, concurrency=1)
    async def stitch(stream: faust.StreamT) -> None:
        # Batches: Faust's per-message overhead dominates the protocol's own work, and a node touched several
        # times in a batch is written to the table (and its changelog) once. take_events acks a batch after this
        # loop body, and also when it is closed mid-batch: an unfinished batch's acks are withheld.
        async for events in stream.take_events(STITCH_BATCH, within=STITCH_WITHIN_S):  # type: ignore[attr-defined]
            try:
                await stitch_batch(stream, events)
            except BaseException:  # cancelled at shutdown included
                _withhold_acks(events)
                raise

    async def stitch_batch(stream: faust.StreamT, events: list[faust.EventT]) -> None:
        states: dict[str, NodeState] = {}
        touched_by: dict[str, faust.EventT] = {}
        steps: list[tuple[Step, str]] = []
        # No await in this loop, so nothing else sees the borrowed current event (take_events reads it).
        previous = stream.current_event
        for event in events:
            msg = message_from_dict(orjson.loads(event.value))
            state = states.get(msg.node)
            if state is None:
                # The RocksDB store reads the partition of Faust's current event: the node's own.
                stream._set_current_event(event)  # type: ignore[attr-defined]
                if (current := nodes.get(msg.node)) is not None:
                    state = NodeState.from_dict(current)
            # The offset lets a replayed message (a crash after the state write) repeat what it may have lost.
            step = handle(state, msg, rules, position=event.message.offset)
            states[msg.node] = step.state
            touched_by[msg.node] = event
            steps.append((step, msg.node))
        stream._set_current_event(previous)  # type: ignore[attr-defined]
        for step, node in steps:
            await send_outputs(step, node)
        # Outputs delivered before any state is written: after a crash the batch is replayed, and a replayed
        # message whose state was already persisted must not owe a message that was lost. Without the flush
        # the order is only that of the send calls; outputs and changelog go out in separate requests.
        await app.producer.flush()
        # No await in this loop either.
        previous = stream.current_event
        for node, state in states.items():
            # The RocksDB store and the changelog pick the partition from Faust's current event; a node's
            # messages all arrive on its own partition, so the event that touched it is the right one.
            stream._set_current_event(touched_by[node])  # type: ignore[attr-defined]
            nodes[node] = state.to_dict()
        stream._set_current_event(previous)  # type: ignore[attr-defined]

    async def send_outputs(step: Step, node: str) -> None:
        for out in step.out:
            await ops.send(key=out.node.encode(), value=orjson.dumps(out.to_dict()))
        now_ms = int(time.time() * 1000)
        for ch in step.identity_changes:
            await identities.send(
                key=f"{ch.id_type}:{ch.id_value}".encode(),
                value=orjson.dumps(
                    {
                        "id_type": ch.id_type,
                        "id_value": ch.id_value,
                        "profile_id": ch.profile_id,
                        "first_seen_ms": step.state.first_seen_ms,
                        "updated_ms": now_ms,
                        "version": ch.version,
                    }
                ),
            )
        for m in step.merges:
            await merges.send(key=m.from_profile.encode(), value=orjson.dumps(asdict(m)))
        for r in step.refusals:
            await refusals.send(key=r.node.encode(), value=orjson.dumps(asdict(r)))
        if step.stitched_event is not None:
            ev = step.stitched_event
            await emit_stitched(ev, ev.get("profileId", ""), node)

    app.conf.cdp_agents = (ingest, stitch)  # keep references; Faust registers agents on the app
    return app


def _withhold_acks(events: list[faust.EventT]) -> None:
    """Keep a batch whose processing did not finish from being committed.

    take_events acks its whole batch when its generator is closed, also when the loop body never finished it
    (the agent cancelled at shutdown), and with stream_wait_empty off the consumer commits acked offsets as it
    stops: the batch's unprocessed messages were skipped for good (seen as stitched events missing after a
    SIGTERM during a burst, their Observes in identity.ops). Marked acked here without the consumer's
    bookkeeping, their offsets are never committed, so they are read again after the restart; replaying a batch
    is safe (positions, see identity.graph)."""
    for event in events:
        event.message.acked = True


def _event_ms(event: dict[str, Any]) -> int:
    return int(parse_ts(event.get("timestamp") or event.get("receivedAt")).timestamp() * 1000)
