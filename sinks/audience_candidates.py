"""Who may have changed audience membership: the SQL that finds them, so that only they are evaluated again.

* After new data: the members the finished inserts touched (``profile_touches``): the profiles of the identity
  keys of new events and identity changes (now, through identities, and as stitched), both sides of a merge, and
  the anonymous ids and device ids of new events.
* On the clock: a rule with ``within_days = N`` changes for someone only when one of their events passes the
  window's edge (``now - N days``). Between two checks at ``lo`` and ``hi`` that is an event timestamped in
  ``[lo - N, hi - N)``; ``events_store`` is ordered by day first, so the slice is read by primary key.
"""

from __future__ import annotations

from sinks.audience_sql import EVENT_ANON_MEMBERS, identifier_pair

_RANGE = "{since:DateTime64(6, 'UTC')} AND touched_at < {until:DateTime64(6, 'UTC')}"


def _profiles_of(db: str, rows: str) -> str:
    """Distinct profiles of ``rows`` (a query with columns ``key``, ``profile_id``): the profile each row names
    (stitched, or the new owner of an identifier) and the current profile of each key."""
    return f"""
SELECT DISTINCT p FROM
(
    SELECT profile_id AS p FROM ({rows}) WHERE profile_id != ''
    UNION ALL
    SELECT profile_id AS p FROM {db}.identities_store FINAL
    WHERE (id_type, id_value) IN (SELECT {identifier_pair("key")} FROM ({rows}) WHERE key != '')
)"""


def touched_profiles_sql(db: str) -> str:
    """Parameters ``since``, ``until``: the touches in between."""
    rows = (
        f"SELECT if(is_identity = 1, key, '') AS key, profile_id FROM {db}.profile_touches WHERE touched_at >= {_RANGE}"
    )
    return _profiles_of(db, rows)


def touched_anonymous_sql(db: str) -> str:
    return f"SELECT DISTINCT key FROM {db}.profile_touches WHERE is_anonymous = 1 AND touched_at >= {_RANGE}"


_SLICE = "timestamp >= {lo:DateTime64(3, 'UTC')} AND timestamp < {hi:DateTime64(3, 'UTC')}"


def window_profiles_sql(db: str) -> str:
    """Parameters ``lo``, ``hi``: the profiles with an event timestamped in between."""
    return _profiles_of(db, f"SELECT identity_key AS key, profile_id FROM {db}.events_store WHERE {_SLICE}")


def window_anonymous_sql(db: str) -> str:
    return (
        f"SELECT DISTINCT m FROM (SELECT anonymous_id, JSONExtractString(context, 'device', 'id') AS device_id "
        f"FROM {db}.events_store WHERE {_SLICE}) ARRAY JOIN {EVENT_ANON_MEMBERS} AS m"
    )
