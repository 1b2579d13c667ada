"""Keeps audience membership current.

Each audience's rule compiles to one parameterised query (sinks/audience_sql.py). The evaluator re-runs it
when something can have changed: at once for a new audience, within about a second of new events reaching
ClickHouse, and on a schedule for rules with time windows (a member leaves when the window passes). The
difference to the previous members is a list of changes (entered / exited, with time), written to
`cdp.audience_members` and to the compacted topic `cdp.audience.changes` that activation systems and the
serving index consume.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.audience import rule_uses_time_window, validate_rule
from sinks.audience_sql import compile_audience
from sinks.clickhouse import ClickHouse
from sinks.metrics import AUDIENCE_CHANGES, AUDIENCE_EVALUATION_SECONDS, AUDIENCE_EVALUATIONS
from streams.audiences import AudienceDefinitions
from streams.producer import AsyncProducer

log = logging.getLogger(__name__)
MEMBER_COLUMNS = ("audience_id", "member", "member_type", "status", "changed_at")
Change = tuple[str, str, str, str, datetime]


def diff_members(audience_id: str, scope: str, old: set[str], new: set[str], at: datetime) -> list[Change]:
    """Entered and exited members as change rows; pure, so tested without I/O."""

    def member_type(m: str) -> str:
        return "profile_id" if scope == "profile" else m.split(":", 1)[0]

    return [(audience_id, m, member_type(m), "entered", at) for m in sorted(new - old)] + [
        (audience_id, m, member_type(m), "exited", at) for m in sorted(old - new)
    ]


@dataclass(eq=False)
class AudienceEvaluator:
    """A thread re-evaluating every audience when definitions or data changed, and on schedule for time windows."""

    ch: ClickHouse
    producer: AsyncProducer
    definitions: AudienceDefinitions
    changes_topic: str
    data_version: Callable[[], int]
    refresh_s: float = 1.0
    window_refresh_s: float = 30.0
    on_change: Callable[[str, str, bool], None] | None = None
    members: dict[str, set[str]] = field(default_factory=dict, init=False)
    evaluations: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audience-evaluator", daemon=True)

    def start(self) -> AudienceEvaluator:
        _, rows = self.ch.query(f"SELECT audience_id, member FROM {self.ch.database}.audience_members_current")
        for audience_id, member in rows:
            self.members.setdefault(audience_id, set()).add(member)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        seen_defs, seen_data, last_window = -1, -1, 0.0
        while not self._stop.wait(min(self.refresh_s, 0.2) if seen_defs >= 0 else 0):
            defs_v, data_v = self.definitions.version, self.data_version()
            now = time.monotonic()
            window_due = now - last_window >= self.window_refresh_s
            if defs_v == seen_defs and data_v == seen_data and not window_due:
                continue
            try:
                if defs_v != seen_defs:
                    self.sync_definitions(defs_v)
                self.evaluate_all(only_windows=(defs_v == seen_defs and data_v == seen_data))
                seen_defs, seen_data = defs_v, data_v
                if window_due:
                    last_window = now
            except Exception as exc:  # ClickHouse briefly unavailable: try again next round
                log.warning("audience evaluation failed: %s", exc)
            self._stop.wait(self.refresh_s)

    def sync_definitions(self, version: int) -> None:
        """Mirror the definitions into `cdp.audiences` so analysts can join on names."""
        current = self.definitions.all()
        ids = {d["id"] for d in current}
        rows = [
            (
                d["id"],
                d["name"],
                d["scope"],
                orjson.dumps(d["rule"]).decode(),
                datetime.fromtimestamp(d["created_at_ms"] / 1000, UTC),
                0,
                version,
            )
            for d in current
        ]
        rows += [(a, "", "", "", datetime.now(UTC), 1, version) for a in self.members if a not in ids]
        if rows:
            self.ch.insert(
                "audiences", rows, ("audience_id", "name", "scope", "rule", "created_at", "deleted", "version")
            )

    def evaluate_all(self, only_windows: bool = False) -> int:
        """Evaluate every audience (or only those with time windows); returns the number of changes."""
        changes = 0
        defs = {d["id"]: d for d in self.definitions.all()}
        for audience_id in list(self.members):
            if audience_id not in defs:  # deleted: everyone exits
                changes += self._apply(audience_id, "profile", set())
                self.members.pop(audience_id, None)
        for d in defs.values():
            rule = validate_rule(d["rule"], d["scope"])
            if only_windows and not rule_uses_time_window(rule):
                continue
            compiled = compile_audience(rule, d["scope"], self.ch.database)
            started = time.perf_counter()
            _, rows = self.ch.query(compiled.sql, compiled.params)
            AUDIENCE_EVALUATION_SECONDS.observe(time.perf_counter() - started)
            AUDIENCE_EVALUATIONS.labels(d["scope"]).inc()
            changes += self._apply(d["id"], d["scope"], {r[0] for r in rows})
        self.evaluations += 1
        return changes

    def _apply(self, audience_id: str, scope: str, new: set[str]) -> int:
        old = self.members.get(audience_id, set())
        if old - new:  # a member erased since (sinks/regulations.py) has no row left, and must not be named again
            old = self._stored_members(audience_id)
        if new == old:
            self.members.setdefault(audience_id, set())
            return 0
        at = datetime.now(UTC)
        rows = diff_members(audience_id, scope, old, new, at)
        for status in ("entered", "exited"):
            AUDIENCE_CHANGES.labels(status).inc(sum(1 for r in rows if r[3] == status))
        for i in range(0, len(rows), 50_000):
            self.ch.insert("audience_members", rows[i : i + 50_000], MEMBER_COLUMNS)
        self.producer.send_sync(
            (
                self.changes_topic,
                f"{aid}|{member}".encode(),
                orjson.dumps(_change_value(aid, member, mtype, status, ts)),
            )
            for aid, member, mtype, status, ts in rows
        )
        if self.on_change is not None:
            for aid, member, _, status, _ in rows:
                self.on_change(member, aid, status == "entered")
        self.members[audience_id] = new
        return len(rows)

    def _stored_members(self, audience_id: str) -> set[str]:
        _, rows = self.ch.query(
            f"SELECT member FROM {self.ch.database}.audience_members_current WHERE audience_id = {{a:String}}",
            {"a": audience_id},
        )
        return {str(m) for (m,) in rows}


def _change_value(audience_id: str, member: str, member_type: str, status: str, at: datetime) -> dict[str, Any]:
    return {
        "audience_id": audience_id,
        "member": member,
        "member_type": member_type,
        "status": status,
        "changed_at": at.isoformat().replace("+00:00", "Z"),
    }
