"""The Faust app: topics, the identity table and the agents that own it.

ingest   raw channel topics -> one Observe per identifier of the event, keyed by identifier (identity.ops)
stitch   identity.ops -> node state in the `identity-nodes` table (RocksDB + compacted changelog),
         messages to neighbour nodes, identifier->profile changes, merges, refusals, stitched events

Agents run with concurrency 1: with more, Faust can commit an offset past a message still being processed
(faust-streaming #606). Outputs are at-least-once (Faust flushes its producer before it commits offsets); the
sinks are idempotent, so a redelivered message is never visible twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faust
import orjson

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
    # use_partitioner: the changelog partition of a key is chosen by the same partitioner (murmur2) and key
    # bytes as its identity.ops messages, so table and topic stay co-partitioned while the agent writes
    # states in batches, outside Faust's per-event context.
    nodes = app.Table("identity-nodes", partitions=settings.topic_partitions, key_type=str, use_partitioner=True)

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
        # times in a batch is written to the table (and its changelog) once. take_events acks a batch only
        # after this loop body has finished with it.
        async for events in stream.take_events(STITCH_BATCH, within=STITCH_WITHIN_S):  # type: ignore[attr-defined]
            states: dict[str, NodeState] = {}
            touched_by: dict[str, faust.EventT] = {}
            for event in events:
                msg = message_from_dict(orjson.loads(event.value))
                state = states.get(msg.node)
                if state is None and (current := nodes.get(msg.node)) is not None:
                    state = NodeState.from_dict(current)
                step = handle(state, msg, rules)
                states[msg.node] = step.state
                touched_by[msg.node] = event
                await send_outputs(step, msg.node)
            # Outputs delivered before any state is written: after a crash the batch is replayed, and a replayed
            # message whose state was already persisted must not owe a message that was lost. Without the flush
            # the order is only that of the send calls; outputs and changelog go out in separate requests.
            await app.producer.flush()
            # No await in this loop, so nothing else sees the borrowed current event.
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


def _event_ms(event: dict[str, Any]) -> int:
    return int(parse_ts(event.get("timestamp") or event.get("receivedAt")).timestamp() * 1000)
