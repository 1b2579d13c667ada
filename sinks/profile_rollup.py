"""Keeps the per-key profile totals current (sinks/migrations/010_profile_state.sql,
sinks/views/profile_*.sql).

A sum computed when a block is inserted would count a message delivered twice, in two blocks, twice. So the
engine only stores deduplicated per-message rows (``events_by_key``) and a row per key each insert touched
(``profile_touches``); this rollup recomputes, from the deduplicated rows, the totals of the keys touched since
its watermark, stores them in ``profile_key_totals`` and then moves the watermark. Readers take the totals of the
keys nothing touched since the watermark and compute the others live (``profile_key_stats_of``), so every read is
exact, whether the rollup is up to date, late, or stopped half-way. The same step folds the keys of every profile
those touches may have changed (``profile_dirty_profiles_of``) into that profile's row of ``profile_totals``, the
rows the analysts' ``profiles`` reads: that view is as of the last step (``interval_s`` behind at most, plus the
step's own time), while the profile API reads the per-key state and is exact.

The watermark only passes touches of finished inserts: :func:`finished_before` is the start of the oldest insert
still running (or now), so an insert that takes long is never passed over and its rows are visible when its
keys are recomputed. A recomputation is idempotent (the newest version of a key's totals wins), so a crash
between storing totals and moving the watermark only means the same keys are recomputed again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sinks.clickhouse import ClickHouse

log = logging.getLogger(__name__)

# Touches are kept 7 days (the table's TTL); a watermark older than this may have missed some, so everything is
# touched again.
STALE_AFTER = timedelta(days=6)

FINISHED_BEFORE_SQL = """
SELECT least(now64(6, 'UTC'), ifNull(min(now64(6, 'UTC') - toIntervalMicrosecond(toUInt64(elapsed * 1000000))),
                                     now64(6, 'UTC')))
FROM system.processes WHERE query_kind = 'Insert'
"""
WATERMARK_SQL = "SELECT max(watermark) FROM {db}.profile_rollup"
_RANGE = "touched_at >= {since:DateTime64(6, 'UTC')} AND touched_at < {until:DateTime64(6, 'UTC')}"
TOUCHED_SQL = f"SELECT uniqExact(key) FROM {{db}}.profile_touches WHERE is_identity = 1 AND {_RANGE}"
# the touched keys of one part (a hash slice, so each recomputing insert has bounded memory), read server-side
_PART = f"""SELECT DISTINCT key FROM {{db}}.profile_touches
WHERE is_identity = 1 AND {_RANGE} AND cityHash64(key) % {{parts:UInt32}} = {{part:UInt32}}"""
ROLLUP_SQL = f"""
INSERT INTO {{db}}.profile_key_totals
SELECT s.*, if(i.current != '', i.current, s.profile_id) AS owner, {{until:DateTime64(6, 'UTC')}} AS version
FROM (SELECT * FROM {{db}}.profile_key_stats_live WHERE key IN ({_PART})) AS s
LEFT JOIN
(
    SELECT concat(id_type, ':', id_value) AS key, argMax(profile_id, version) AS current FROM {{db}}.identities_store
    WHERE (id_type, id_value) IN (SELECT substring(key, 1, position(key, ':') - 1),
                                         substring(key, position(key, ':') + 1)
                                  FROM ({_PART}))
    GROUP BY id_type, id_value
) AS i ON s.key = i.key
"""
# the profiles whose row the touches between the watermark and `until` may have changed
DIRTY_PROFILES_SQL = """
SELECT groupUniqArray(profile_id) FROM {db}.profile_dirty_profiles_of(since = {since:DateTime64(6, 'UTC')},
                                                                     until = {until:DateTime64(6, 'UTC')})
"""
# their rows folded from their keys; a profile that holds no identifier any more gets a deleted row
PROFILE_ROWS_SQL = """
INSERT INTO {db}.profile_totals
SELECT d.profile_id, p.* EXCEPT profile_id, {until:DateTime64(6, 'UTC')}, p.profile_id = ''
FROM (SELECT arrayJoin({profiles:Array(String)}) AS profile_id) AS d
LEFT JOIN
(
    SELECT * FROM {db}.profiles_of(keys = arrayPushBack((
        SELECT groupUniqArray(key) FROM {db}.profile_keys WHERE profile_id IN {profiles:Array(String)}), ''))
) AS p ON p.profile_id = d.profile_id
"""
# the first rollup of a store: every profile's row
ALL_PROFILE_ROWS_SQL = """
INSERT INTO {db}.profile_totals SELECT *, {until:DateTime64(6, 'UTC')}, 0 FROM {db}.profiles_of(keys = [])
"""
MOVE_SQL = "INSERT INTO {db}.profile_rollup (watermark) VALUES ({until:DateTime64(6, 'UTC')})"
TOUCH_ALL_SQL = """
INSERT INTO {db}.profile_touches (touched_at, key, profile_id, is_identity, is_anonymous)
SELECT now64(6, 'UTC'), key, profile_id, 1, 0 FROM {db}.events_by_key WHERE is_identity = 1 GROUP BY key, profile_id
UNION ALL
SELECT now64(6, 'UTC'), concat(id_type, ':', id_value), profile_id, 1, 0 FROM {db}.identities
"""
EPOCH = datetime(1970, 1, 1)


def finished_before(ch: ClickHouse) -> datetime:
    """An instant before which every insert has finished: the start of the oldest insert still running, or now.
    A row stamped with ``now64()`` by an insert (the touches' ``touched_at``) is never earlier than its insert's
    start, so every touch before this instant belongs to an insert whose rows are all visible."""
    return utc(ch.scalar(FINISHED_BEFORE_SQL))


def utc(value: datetime) -> datetime:
    """A timestamp from the engine as naive UTC, the form bound parameters are sent in (a server may answer in
    its own time zone, chDB answers naive UTC)."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


@dataclass(eq=False)
class ProfileRollup:
    """A thread running :meth:`step` every ``interval_s``; one per process that runs the sinks. ``ch`` should be
    a client of its own (its inserts then never hold up the API's queries); its owner closes it."""

    ch: ClickHouse
    interval_s: float = 1.0
    chunk: int = 50_000  # keys per recomputing insert
    steps: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._db = self.ch.database
        self._stopped = threading.Event()
        self._worker: threading.Thread | None = None

    def start(self) -> ProfileRollup:
        self.touch_all_if_stale()
        self._worker = threading.Thread(target=self._run, name="profile-rollup", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._worker is not None:
            self._worker.join(timeout=30)

    def watermark(self) -> datetime:
        return utc(self.ch.scalar(WATERMARK_SQL.replace("{db}", self._db)))

    def touch_all_if_stale(self) -> None:
        """After a stop longer than the touches are kept, the totals of some keys (and rows of some profiles) may be
        behind with no touch left to say so: touch every key and identifier, so readers compute them live until the
        rollup has caught up."""
        watermark = self.watermark()
        if watermark > datetime(1970, 1, 2) and datetime.now(UTC).replace(tzinfo=None) - watermark > STALE_AFTER:
            log.warning("profile rollup watermark is older than the touches kept: recomputing every key")
            self.ch.command(TOUCH_ALL_SQL.replace("{db}", self._db))

    def step(self) -> int:
        """Recompute the keys touched between the watermark and the oldest unfinished insert, then move the
        watermark there. Returns how many keys it recomputed."""
        since, until = self.watermark(), finished_before(self.ch)
        if until <= since:
            return 0
        params = {"since": since, "until": until}
        touched = int(self.ch.scalar(TOUCHED_SQL.replace("{db}", self._db), params))
        # (the first rollup stores every profile: no need to know which were touched)
        first = since <= EPOCH
        profiles = [] if first else list(self.ch.scalar(DIRTY_PROFILES_SQL.replace("{db}", self._db), params))
        if not touched and not profiles:  # nothing to recompute; the watermark stays, no reader is held back by it
            return 0
        parts = -(-touched // self.chunk)
        for part in range(parts):
            self.ch.command(ROLLUP_SQL.replace("{db}", self._db), params | {"parts": parts, "part": part})
        self.profile_rows(until, profiles, first)
        self.ch.command(MOVE_SQL.replace("{db}", self._db), {"until": until})
        self.steps += 1
        return touched

    def profile_rows(self, until: datetime, profiles: list[str], first: bool) -> None:
        """Store the rows of the touched profiles, folded from their keys' state now (which the key totals just
        stored include), in slices of ``chunk`` profiles. The first rollup (no watermark yet: readers fold every
        profile live) stores every profile's row, over whatever an interrupted first rollup left."""
        if first:
            if self.watermark() <= EPOCH:  # (a rollup of another process may have just finished the first one)
                self.ch.command(f"TRUNCATE TABLE {self._db}.profile_totals")
            self.ch.command(ALL_PROFILE_ROWS_SQL.replace("{db}", self._db), {"until": until})
            return
        for start in range(0, len(profiles), self.chunk):
            chunk = profiles[start : start + self.chunk]
            self.ch.command(PROFILE_ROWS_SQL.replace("{db}", self._db), {"until": until, "profiles": chunk})

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.step()
            except Exception as exc:  # ClickHouse briefly unavailable: readers stay exact, the next step catches up
                log.warning("profile rollup failed: %s", exc)
