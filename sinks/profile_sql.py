"""Reading one profile in what that profile costs: the queries of `GET /v1/profiles`.

Profile state is kept per identifier key (sinks/migrations/010_profile_state.sql). Reading a profile first
lists the keys it ever held (``profile_keys``, by primary key) with the current profile of each; the keys it
holds now, and the keys identities does not know whose events were stitched with it, are then passed as plain
lists to one more query (behaviour, traits and latest events together), whose every part is a primary-key read of
those keys' rows with a small plan: two round trips after the identifier's lookup. The rules are the
ones of the analysts' ``profiles`` view (a key counts under its identifier's current profile, or, unknown to
identities, under the profile its events were stitched with), and a property test holds the two equal
(tests/sinks/test_profile_state.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.consent import Choice, profile_consent
from sinks.clickhouse import ClickHouse

__all__ = ["GROUPS_SQL", "KEYS_OF_PROFILES_SQL", "ProfileRead", "keys_of_profiles", "profile_of", "read_profile"]

PROFILE_OF_SQL = """
SELECT argMax(profile_id, version) FROM {db}.identities_store WHERE id_type = {t:String} AND id_value = {v:String}
"""
# every key ever under the profile (known = 0), and the current profile of those identities holds (known = 1);
# a union of two primary-key reads rather than a join, which would build a hash table per request
KEYS_SQL = """
SELECT key, '' AS current, toUInt8(0) AS known FROM {db}.profile_keys WHERE profile_id = {p:String}
UNION ALL
SELECT concat(id_type, ':', id_value), argMax(profile_id, version), toUInt8(1) FROM {db}.identities_store
WHERE (id_type, id_value) IN (SELECT substring(key, 1, position(key, ':') - 1), substring(key, position(key, ':') + 1)
                              FROM {db}.profile_keys WHERE profile_id = {p:String})
GROUP BY id_type, id_value
"""
# the rows that count for the profile: of the keys it holds, and of the unknown keys as stitched with it; most
# profiles have no unknown keys, and their queries leave that branch out (each branch costs the engine a filter
# to plan and run in every part of the query)
_MINE = "(key IN {held:Array(String)} OR (key IN {loose:Array(String)} AND profile_id = {p:String}))"
_HELD = "key IN {held:Array(String)}"


def _profile_sql(mine: str) -> str:
    """The behaviour row, the traits, the latest events and the consent choices of the rows ``mine`` selects (with
    the profile's latest merge), in one round trip."""
    return f"""
SELECT * FROM ({STATS_SQL.replace(_MINE, mine)}) AS s
CROSS JOIN (SELECT groupArray((kind, name, v)) AS trait_values FROM ({TRAITS_SQL.replace(_MINE, mine)})) AS t
CROSS JOIN (SELECT groupArray(({", ".join(EVENT_FIELDS)})) AS latest FROM ({EVENTS_SQL.replace(_MINE, mine)})) AS e
CROSS JOIN ({CONSENT_SQL.replace(_MINE, mine)}) AS c
CROSS JOIN ({MERGED_AT_SQL}) AS m
"""


STATS_SQL = f"""
SELECT min(timestamp) AS first_seen, max(timestamp) AS last_seen, count() AS events,
       sumMap(map(toString(type), toUInt64(1))) AS events_by_type,
       sumMap(map(toString(channel), toUInt64(1))) AS events_by_channel,
       countIf(type = 'track' AND event = 'Order Completed') AS orders, sum(revenue) AS revenue,
       sumMapIf(map(toString(currency), row.revenue), type = 'track' AND event = 'Order Completed')
           AS revenue_by_currency,
       argMax(toString(channel), (timestamp, message_id)) AS last_channel,
       arraySort(groupUniqArray(toString(channel))) AS channels
FROM {{db}}.events_by_key AS row FINAL
WHERE is_identity = 1 AND {_MINE}
"""
TRAITS_SQL = f"""
SELECT kind, name, if(startsWith(raw, '"'), JSONExtractString(raw), raw) AS v
FROM
(
    SELECT kind, name, argMaxMerge(value) AS raw FROM {{db}}.profile_traits_by_key
    WHERE {_MINE} GROUP BY kind, name
)
WHERE raw != 'null'
ORDER BY kind, name
"""
# each key's standing consent choice per purpose, and the profile's latest merge: folded by schemas/consent.py
CONSENT_SQL = f"""
SELECT groupArray((key, purpose, c.1, c.2, c.3)) AS consent_choices FROM
(
    SELECT key, purpose, argMaxMerge(choice) AS c FROM {{db}}.consent_by_key
    WHERE {_MINE} GROUP BY key, purpose
)
"""
MERGED_AT_SQL = "SELECT max(event_time) AS merged_at FROM {db}.merges_store WHERE into_profile = {p:String}"
EVENT_FIELDS = ("message_id", "type", "event", "channel", "timestamp", "properties")
EVENTS_SQL = f"""
SELECT {", ".join(EVENT_FIELDS)}
FROM {{db}}.events_by_key FINAL
WHERE is_identity = 1 AND {_MINE}
ORDER BY timestamp DESC, message_id DESC LIMIT {{limit:UInt32}}
"""
# The groups the profile's group calls named (a profile without group calls skips this query), each with its traits
# from every group call that named it: the latest value per key, JSON null unsetting it, as the `groups` view. Both
# parts read only the group calls' granules of events_store (`type` is in its sort key), without FINAL: a redelivered
# copy changes no minimum, maximum or latest value.
GROUPS_SQL = f"""
WITH mine AS
(
    SELECT group_id, min(timestamp) AS first_seen, max(timestamp) AS last_seen
    FROM {{db}}.events_store
    WHERE type = 'group' AND group_id != '' AND message_id IN
        (SELECT message_id FROM {{db}}.events_by_key WHERE is_identity = 1 AND type = 'group' AND {_MINE})
    GROUP BY group_id
)
SELECT g.group_id AS group_id, t.traits AS traits, g.first_seen AS first_seen, g.last_seen AS last_seen
FROM mine AS g
LEFT JOIN
(
    SELECT group_id, CAST(mapFromArrays(groupArray(k), groupArray(v)), 'Map(String, String)') AS traits
    FROM
    (
        SELECT group_id, k, if(startsWith(raw, '"'), JSONExtractString(raw), raw) AS v
        FROM
        (
            SELECT group_id, x.1 AS k, argMax(x.2, (timestamp, message_id)) AS raw
            FROM {{db}}.events_store
            ARRAY JOIN JSONExtractKeysAndValuesRaw(traits) AS x
            WHERE type = 'group' AND group_id IN (SELECT group_id FROM mine)
            GROUP BY group_id, k
        )
        WHERE raw != 'null'
    )
    GROUP BY group_id
) AS t ON t.group_id = g.group_id
ORDER BY g.first_seen, g.group_id
"""

# in one round trip: the behaviour row, with the traits, the latest events and the consent as arrays of tuples
PROFILE_SQL = _profile_sql(_MINE)
PROFILE_HELD_SQL = _profile_sql(_HELD)  # (no unknown keys)


KEYS_OF_PROFILES_SQL = "SELECT groupUniqArray(key) FROM {db}.profile_keys WHERE profile_id IN {members:Array(String)}"


def keys_of_profiles(db: str, profiles: str) -> str:
    """The scalar subquery listing every key ever under the profiles in ``profiles`` (an SQL array: a bound
    parameter), as the ``keys`` argument of the ``*_of`` views."""
    return f"(SELECT groupUniqArray(key) FROM {db}.profile_keys WHERE profile_id IN {profiles})"


def consent_of(choices: list[tuple[str, str, int, datetime, int]], merged_at: datetime) -> dict[str, str]:
    """The profile's consent from its keys' standing choices, as the ``profiles`` view shows it (true/false)."""
    folded = profile_consent(
        (Choice(key, purpose, bool(g), at, bool(explicit)) for key, purpose, g, at, explicit in choices),
        merged_at if merged_at.timestamp() > 0 else None,
    )
    return {purpose: "true" if g else "false" for purpose, g in folded.items()}


@dataclass(frozen=True)
class ProfileRead:
    """One profile as the API serves it: the columns of the ``profiles`` view and its latest events."""

    row: dict[str, Any]
    events: list[dict[str, Any]]
    groups: list[dict[str, Any]]


def profile_of(ch: ClickHouse, id_type: str, value: str) -> str:
    """The current profile of an identifier ('' when nobody holds it)."""
    return str(ch.scalar(PROFILE_OF_SQL.replace("{db}", ch.database), {"t": id_type, "v": value}) or "")


def read_profile(ch: ClickHouse, profile_id: str, events: int = 50) -> ProfileRead | None:
    """The profile's row (as in ``cdp.profiles``) and its ``events`` latest events, or None when no identifier
    belongs to it now."""
    db = ch.database
    current: dict[str, str] = {}
    for key, owner, known in ch.query(KEYS_SQL.replace("{db}", db), {"p": profile_id})[1]:
        if known or key not in current:
            current[key] = owner
    held = sorted(key for key, owner in current.items() if owner == profile_id)
    if not held:
        return None
    loose = sorted(key for key, owner in current.items() if not owner)
    sql, params = (PROFILE_SQL, {"loose": loose}) if loose else (PROFILE_HELD_SQL, {})
    columns, rows = ch.query(sql.replace("{db}", db), params | {"p": profile_id, "held": held, "limit": events})
    row: dict[str, Any] = dict(zip(columns, rows[0], strict=True))
    traits, latest = row.pop("trait_values"), row.pop("latest")
    choices, merged_at = row.pop("consent_choices"), row.pop("merged_at")
    row |= {"profile_id": profile_id, "identifiers": sorted(tuple(key.split(":", 1)) for key in held)}
    if not row["events"]:  # as the view's outer join leaves a profile without events: its defaults
        row |= {"last_channel": "", "channels": []}
    row["traits"] = {name: v for kind, name, v in sorted(traits) if kind == "t"}
    row["consent"] = consent_of(choices, merged_at)
    found = [dict(zip(EVENT_FIELDS, e, strict=True)) for e in latest]
    found.sort(key=lambda e: (e["timestamp"], e["message_id"]), reverse=True)  # groupArray keeps no order
    groups: list[dict[str, Any]] = []
    if row["events_by_type"].get("group"):
        groups_sql = GROUPS_SQL if loose else GROUPS_SQL.replace(_MINE, _HELD)
        columns, rows = ch.query(groups_sql.replace("{db}", db), params | {"p": profile_id, "held": held})
        groups = [dict(zip(columns, r, strict=True)) for r in rows]
    return ProfileRead(row, found, groups)
