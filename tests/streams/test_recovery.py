"""The stitch app's hand-over from table recovery to the streams (streams.app._SeekFirstRecovery).

Faust's own order (resume the stream partitions, seek, then empty the stream queues) loses the records
fetched in between; the repair seeks and empties the queues while the partitions are still paused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from cdp.settings import Settings
from identity.rules import IdentityRules
from streams.app import _SeekFirstRecovery, create_app


class RecordingConsumer:
    """Stands in for Faust's consumer: records the calls the recovery makes, in order."""

    def __init__(self, calls: list[Any], assignment: set[TP]) -> None:
        self.calls = calls
        self._assignment = assignment

    def assignment(self) -> set[TP]:
        return self._assignment

    async def perform_seek(self) -> None:
        self.calls.append("seek")

    def resume_partitions(self, tps: set[TP]) -> None:
        self.calls.append(("resume partitions", frozenset(tps)))

    def resume_flow(self) -> None:
        self.calls.append("resume flow")


def test_stream_partitions_resume_only_after_the_seek_and_the_queue_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(Settings(data_dir=tmp_path, topic_prefix="t"), IdentityRules.load(None))
    recovery = app.tables.recovery
    assert isinstance(recovery, _SeekFirstRecovery)
    calls: list[Any] = []

    async def started() -> None:
        calls.append("fetcher running")

    async def at_once(coro: Any, timeout: float | None = None) -> None:
        await coro  # the recovery service is not running: no rebalance can interrupt the wait

    monkeypatch.setattr(app._fetcher, "maybe_start", started)  # type: ignore[attr-defined]
    monkeypatch.setattr(recovery, "_wait", at_once)
    monkeypatch.setattr(app.flow_control, "resume", lambda: calls.append("empty stream queues"))
    ops, changelog = TP("t.identity.ops", 1), TP("t-stitch-identity-nodes-changelog", 1)
    app.consumer = RecordingConsumer(calls, {ops, changelog})  # type: ignore[assignment]
    app.consumer_generation_id = 3

    asyncio.run(recovery.on_recovery_completed(generation_id=3))

    assert calls == [
        "seek",
        "empty stream queues",
        ("resume partitions", frozenset({ops})),  # the changelog partition stays paused
        "resume flow",
        "fetcher running",
    ]
    assert recovery.completed.is_set()
