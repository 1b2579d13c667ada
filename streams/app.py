"""The stitch worker: a Faust app that owns partitions of the identity graph, and the batch loop that stitches them.

Faust is the worker framework: the app, its consumer group (one member per ``cdp worker`` / ``cdp run``
process), the assignment of partitions to members and the rebalance protocol. The app subscribes one agent to
``Topics.identity_owners``, a topic that carries no records: its partitions are what the group assigns, and the
worker assigned partition p owns partition p of the raw channel topics, of the identity messages and of the node
changelog. Records never pass through Faust's per-record path; ``streams.stitcher`` consumes and produces them
in batches with confluent-kafka, following this assignment (the rebalance callbacks below), in one Kafka
transaction per batch. The app uses only Faust's public API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import TP

from identity.rules import IdentityRules
from schemas.settings import Settings
from streams.stitcher import Stitcher
from streams.topics import topics_for

log = logging.getLogger(__name__)


def _owned(partitions: Iterable[TP], topic: str) -> set[int]:
    return {tp.partition for tp in partitions if tp.topic == topic}


class StitchWorker:
    """The worker part: the Faust app (membership, assignment) and the stitcher (the work), started and stopped in
    the order that loses nothing: the stitcher commits its last batch and lets go of its partitions before the app
    leaves the group and the partitions move to another worker."""

    def __init__(self, settings: Settings, rules: IdentityRules) -> None:
        self.stitcher = Stitcher(settings, rules, on_failure=self._failed)
        self.app = _faust_app(settings, self.stitcher)

    async def start(self) -> None:
        await asyncio.to_thread(self.stitcher.start)
        await self.app.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.stitcher.stop)
        await self.app.stop()

    @staticmethod
    def _failed(exc: BaseException) -> None:
        # The process must not go on holding partitions it no longer stitches: stop it as Ctrl-C would.
        log.critical("stitching failed (%r): stopping this process", exc)
        os.kill(os.getpid(), signal.SIGTERM)


def create_app(settings: Settings, rules: IdentityRules) -> StitchWorker:
    return StitchWorker(settings, rules)


def _faust_app(settings: Settings, stitcher: Stitcher) -> faust.App:
    topic = topics_for(settings).identity_owners
    datadir = Path(settings.data_dir) / "faust" / settings.worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.topic_prefix}-stitch",
        broker=[f"kafka://{b.strip()}" for b in settings.kafka_bootstrap.split(",")],
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        # A dead worker's partitions move after the session timeout; the whole group waits for that move.
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=settings.worker_session_timeout_s / 5,
        broker_rebalance_timeout=2 * settings.worker_session_timeout_s,
    )
    owners = app.topic(
        topic,
        partitions=settings.topic_partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(owners)
    async def own(stream: Any) -> None:
        # The topic carries no records; the agent is what makes the group assign its partitions to this worker.
        async for _ in stream:
            pass

    async def on_revoked(sender: faust.App, revoked: set[TP], **_: Any) -> None:
        # Blocks the rebalance until the stitcher's batch on these partitions is committed and they are let go.
        await asyncio.to_thread(stitcher.revoke, _owned(revoked, topic))

    async def on_assigned(sender: faust.App, assigned: set[TP], **_: Any) -> None:
        stitcher.assign(_owned(assigned, topic))  # the whole assignment, after the revocation

    # cast: mode types a handler with a type variable it never binds, which no function matches.
    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    app.on_partitions_assigned.connect(cast(Any, on_assigned))
    return app
