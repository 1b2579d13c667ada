"""Keeps audience membership current, evaluating only who may have changed.

Each audience's rule compiles to one parameterised query (sinks/audience_sql.py). It runs over everyone only
for a new or changed definition (and once at start, for what happened while the process was down). Otherwise
the evaluator re-checks, restricted to them (``restrict_to``), only:

* the members new data touched: within about a second (``refresh_s``) of an insert finishing, the profiles and
  anonymous ids its rows name (sinks/audience_candidates.py). Per audience the evaluator remembers what its
  last full evaluation took and what a re-check costs per member; a batch whose re-check would cost more than
  a full evaluation (many members touched in a small store) is evaluated in full instead;
* for rules with time windows, on a schedule (``window_refresh_s``), the members with an event that passed a
  window's edge since the last check.

A full evaluation of a profile audience whose rule reads the profile row (traits, computed fields) reads the
stored rows of ``profiles``, which are as of the profile rollup's last step (sinks/profile_rollup.py). So it first
takes one rollup step itself: the rows are then current up to the inserts finished before the evaluation, and the
touches after that are re-checked as usual. Without it a member touched just before a full evaluation would be
judged on its old row and never looked at again. (Behaviour is read from the events, which are current.)

The difference to the previous members is a list of changes (entered / exited, with time), written to
`cdp.audience_members` and to the compacted topic `cdp.audience.changes` that activation systems and the
serving index consume.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.audience import Rule, default_purpose, rule_window_days, validate_rule
from sinks.audience_candidates import (
    touched_anonymous_sql,
    touched_profiles_sql,
    window_anonymous_sql,
    window_profiles_sql,
)
from sinks.audience_sql import compile_audience, needs_profile_row
from sinks.clickhouse import ClickHouse
from sinks.metrics import AUDIENCE_CHANGES, AUDIENCE_EVALUATION_SECONDS, AUDIENCE_EVALUATIONS
from sinks.profile_rollup import ProfileRollup, finished_before, utc
from sinks.profile_sql import KEYS_OF_PROFILES_SQL
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


@dataclass(frozen=True, eq=False)
class Audience:
    """A definition as the evaluator uses it: validated once, with the window edges it must watch."""

    id: str
    scope: str
    rule: Rule
    text: str  # the rule and purpose as stored: a definition whose text changed is evaluated in full again
    window_days: frozenset[int]
    purpose: str

    @classmethod
    def of(cls, definition: dict[str, Any]) -> Audience:
        scope = definition["scope"]
        rule = validate_rule(definition["rule"], scope)
        purpose = definition.get("purpose") or default_purpose(scope)
        text = orjson.dumps([definition["rule"], purpose], option=orjson.OPT_SORT_KEYS).decode()
        return cls(definition["id"], scope, rule, text, frozenset(rule_window_days(rule)), purpose)


@dataclass(eq=False)
class AudienceEvaluator:
    """A thread keeping every audience's members current: full evaluations for new definitions, restricted ones
    for touched members and for members at a window's edge."""

    ch: ClickHouse
    producer: AsyncProducer
    definitions: AudienceDefinitions
    changes_topic: str
    data_version: Callable[[], int]
    refresh_s: float = 1.0
    window_refresh_s: float = 30.0
    on_change: Callable[[str, str, bool], None] | None = None
    chunk: int = 5_000  # members per restricted query
    full_s: dict[str, float] = field(default_factory=dict, init=False)  # last full evaluation, per audience
    member_s: dict[str, float] = field(default_factory=dict, init=False)  # re-check seconds per member, per audience
    members: dict[str, set[str]] = field(default_factory=dict, init=False)
    evaluations: int = field(default=0, init=False)  # full evaluations
    rechecks: int = field(default=0, init=False)  # restricted evaluations
    last_batch: dict[str, float] = field(default_factory=dict, init=False)  # the last round's members and seconds

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audience-evaluator", daemon=True)
        self._audiences: dict[str, Audience] = {}
        self._since: datetime | None = None  # touches before this are evaluated
        self._window_at: datetime | None = None  # window edges up to this instant are evaluated
        self._rollup = ProfileRollup(self.ch)  # steps taken before full evaluations, on this client

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
        seen_defs, seen_data, last_window = -1, -1, time.monotonic()
        while not self._stop.is_set():
            defs_v, data_v = self.definitions.version, self.data_version()
            try:
                if defs_v != seen_defs:
                    self.sync_definitions(defs_v)
                    self.refresh_definitions()
                    seen_defs = defs_v
                if data_v != seen_data:
                    seen_data = data_v
                    self.recheck_touched()
                if time.monotonic() - last_window >= self.window_refresh_s:
                    last_window = time.monotonic()
                    self.recheck_windows()
            except Exception as exc:  # ClickHouse briefly unavailable: the next round catches up from the same marks
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

    def refresh_definitions(self) -> int:
        """Full evaluations for new and changed definitions, everyone out of deleted ones; returns the changes.
        The marks for touches and window edges are taken before the first evaluation, so what arrives during it
        is checked again afterwards."""
        if self._since is None:
            self._since = finished_before(self.ch)
            self._window_at = self._engine_now()
        changes = 0
        defs = {d["id"]: Audience.of(d) for d in self.definitions.all()}
        for audience_id in list(self.members):
            if audience_id not in defs:  # deleted: everyone exits
                gone = self._audiences.pop(audience_id, None)
                scope = gone.scope if gone is not None else "profile"
                changes += self._apply(audience_id, scope, set(self.members[audience_id]), set())
                self.members.pop(audience_id, None)
        for audience in defs.values():
            known = self._audiences.get(audience.id)
            if known is None or known.text != audience.text or known.scope != audience.scope:
                changes += self.evaluate(audience)
                self._audiences[audience.id] = audience
        return changes

    def evaluate(self, audience: Audience) -> int:
        """Evaluate one audience over everyone."""
        compiled = compile_audience(audience.rule, audience.scope, self.ch.database, purpose=audience.purpose)
        started = time.perf_counter()
        if audience.scope == "profile" and needs_profile_row(audience.rule):
            self._rollup.step()
        _, rows = self.ch.query(compiled.sql, compiled.params)
        self.full_s[audience.id] = time.perf_counter() - started
        AUDIENCE_EVALUATION_SECONDS.observe(self.full_s[audience.id])
        AUDIENCE_EVALUATIONS.labels(audience.scope).inc()
        self.evaluations += 1
        old = self.members.get(audience.id, set())
        return self._apply(audience.id, audience.scope, old, {r[0] for r in rows})

    def recheck_touched(self) -> int:
        """Re-check the members touched by inserts finished since the last round; returns the changes."""
        if self._since is None:
            return 0
        until = finished_before(self.ch)
        if until <= self._since:
            return 0
        params = {"since": self._since, "until": until}
        db = self.ch.database
        started = time.perf_counter()
        audiences = list(self._audiences.values())
        profiles, anonymous = self._candidates(audiences, touched_profiles_sql(db), touched_anonymous_sql(db), params)
        changes = self._recheck(profiles, anonymous, audiences)
        self._since = until
        self.last_batch = {"profiles": len(profiles), "anonymous": len(anonymous), "s": time.perf_counter() - started}
        return changes

    def recheck_windows(self) -> int:
        """Re-check, for the audiences with time windows, the members with an event that passed a window's edge
        since the last check; returns the changes."""
        if self._window_at is None:
            return 0
        lo, hi = self._window_at, self._engine_now()
        db = self.ch.database
        changes = 0
        by_days: dict[int, list[Audience]] = {}
        for audience in self._audiences.values():
            for days in audience.window_days:
                by_days.setdefault(days, []).append(audience)
        for days, audiences in sorted(by_days.items()):
            edge = {"lo": lo - timedelta(days=days), "hi": hi - timedelta(days=days)}
            profiles, anonymous = self._candidates(audiences, window_profiles_sql(db), window_anonymous_sql(db), edge)
            changes += self._recheck(profiles, anonymous, audiences)
        self._window_at = hi
        return changes

    def _candidates(
        self, audiences: list[Audience], profiles_sql: str, anonymous_sql: str, params: dict[str, Any]
    ) -> tuple[list[str], list[str]]:
        """The candidate profiles and anonymous members, each looked up only if some audience has that scope."""
        scopes = {a.scope for a in audiences}
        profiles = [r[0] for r in self.ch.query(profiles_sql, params)[1]] if "profile" in scopes else []
        anonymous = [r[0] for r in self.ch.query(anonymous_sql, params)[1]] if "anonymous" in scopes else []
        return profiles, anonymous

    def _recheck(self, profiles: list[str], anonymous: list[str], audiences: list[Audience]) -> int:
        """Evaluate ``audiences`` restricted to the given members, a chunk at a time; the keys of a chunk of
        profiles are read once for all audiences."""
        changes = 0
        for scope, members in (("profile", profiles), ("anonymous", anonymous)):
            mine = [a for a in audiences if a.scope == scope]
            if not mine or not members:
                continue
            cheaper_in_full = [a for a in mine if self._cheaper_in_full(a, len(members))]
            changes += sum(self.evaluate(a) for a in cheaper_in_full)
            mine = [a for a in mine if a not in cheaper_in_full]
            for i in range(0, len(members) if mine else 0, self.chunk):
                some = members[i : i + self.chunk]
                keys = None
                if scope == "profile" and mine:
                    keys = self.ch.scalar(KEYS_OF_PROFILES_SQL.replace("{db}", self.ch.database), {"members": some})
                for audience in mine:
                    compiled = compile_audience(
                        audience.rule,
                        scope,
                        self.ch.database,
                        restrict_to=some,
                        member_keys=keys,
                        purpose=audience.purpose,
                    )
                    started = time.perf_counter()
                    _, rows = self.ch.query(compiled.sql, compiled.params)
                    per_member = (time.perf_counter() - started) / len(some)
                    known = self.member_s.get(audience.id)
                    self.member_s[audience.id] = per_member if known is None else (known + per_member) / 2
                    self.rechecks += 1
                    old = self.members.get(audience.id, set()) & set(some)
                    changes += self._apply(audience.id, scope, old, {r[0] for r in rows})
        return changes

    def _cheaper_in_full(self, audience: Audience, members: int) -> bool:
        """Whether re-checking ``members`` would take longer than the audience's last full evaluation."""
        full, per_member = self.full_s.get(audience.id), self.member_s.get(audience.id)
        return full is not None and per_member is not None and members * per_member > full

    def _engine_now(self) -> datetime:
        """The engine's clock: the rules compare event times with the engine's now64()."""
        return utc(self.ch.scalar("SELECT now64(3, 'UTC')"))

    def _apply(self, audience_id: str, scope: str, old: set[str], new: set[str]) -> int:
        """``old`` were members among those evaluated, ``new`` are; the members not evaluated stay as they are."""
        members = self.members.setdefault(audience_id, set())
        exits = old - new
        if exits:  # a member erased since (sinks/regulations.py) has no row left, and must not be named again
            stored = self._stored_members(audience_id)
            members -= exits - stored
            old = old & stored
        if new == old:
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
        members -= old - new
        members |= new - old
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
