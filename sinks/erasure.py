"""Erasing people from ClickHouse: their identity clusters, the rows that hold them, and the proof they are gone.

Three traps decide the shape (shared/research/privacy.md):

* A value written into a mutation stays in the mutation's text (``system.mutations``, ``mutation_N.txt``), even
  as a query parameter. So no statement here carries a value: the cluster's identifiers sit in a work table of
  the Memory engine (nothing on disk), filled by inserts, and every statement reads them with ``IN (SELECT ...)``.
  The work table is dropped when the regulation is done.
* A person is more than the identifier asked for: every identifier of the cluster, and every profile id the
  cluster ever had (merges move the label, and old events keep the old one). The cluster is read from the
  identities store (every version, not only the current) and the merges, to a fixed point.
* Materialized views are not followed by a delete, and tables come and go with migrations: the tables to erase
  from are every MergeTree table of the database, found in ``system.tables``, each with a predicate built from
  the columns that name a person (:func:`predicate_for`).

A lightweight DELETE only masks rows; ``ALTER TABLE ... DELETE`` with ``mutations_sync`` rewrites the parts, so
the values are gone from the live parts when the statement returns (old parts follow after the engine's
``old_parts_lifetime``). One statement per table serves every subject of the regulation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sinks.clickhouse import ClickHouse

__all__ = [
    "MAX_ROUNDS",
    "Cluster",
    "ErasurePlan",
    "WorkTable",
    "memberships",
    "person_tables",
    "plan_erasure",
    "predicate_for",
]

MAX_ROUNDS = 16  # cluster expansion rounds (identifier -> profiles -> merged profiles -> identifiers)
WORK_PREFIX = "privacy_work_"
# Every mutation waits for its own end (and, on a replicated server, the replicas'), and may read the work table.
MUTATION_SETTINGS = {"mutations_sync": 2, "allow_nondeterministic_mutations": 1}

# Columns that hold a profile id, a node key (`type:value`), or the raw value of one identifier type.
PROFILE_COLUMNS = ("profile_id", "from_profile", "into_profile", "owner")
KEY_COLUMNS = ("identity_key", "node", "peer", "key")  # key: the per-key profile state (010)
VALUE_COLUMNS = ("anonymous_id", "user_id")


def predicate_for(columns: Iterable[str], work: str) -> str | None:
    """The WHERE clause that selects a table's rows of the people in ``work`` (a fully qualified work table),
    from the columns the table has; None for a table that names nobody (audience definitions, migrations)."""
    have = set(columns)
    profiles = f"(SELECT id_value FROM {work} WHERE id_type = 'profile_id')"
    keys = f"(SELECT concat(id_type, ':', id_value) FROM {work})"
    parts = [f"{c} IN {profiles}" for c in PROFILE_COLUMNS if c in have]
    parts += [f"{c} IN {keys}" for c in KEY_COLUMNS if c in have]
    parts += [f"{c} IN (SELECT id_value FROM {work} WHERE id_type = '{c}')" for c in VALUE_COLUMNS if c in have]
    if {"id_type", "id_value"} <= have:
        parts.append(f"(id_type, id_value) IN (SELECT id_type, id_value FROM {work})")
    if "member" in have:  # an audience member: a profile id (profile scope) or a node key (anonymous scope)
        parts.append(f"member IN {profiles} OR member IN {keys}")
    return " OR ".join(parts) if parts else None


@dataclass(frozen=True)
class ErasurePlan:
    """Table -> the predicate of its rows to erase, all reading one work table."""

    database: str
    predicates: Mapping[str, str]

    def count_sql(self, table: str) -> str:
        return f"SELECT count() FROM {self.database}.{table} WHERE {self.predicates[table]}"

    def delete_sql(self, table: str) -> str:
        return f"ALTER TABLE {self.database}.{table} DELETE WHERE {self.predicates[table]}"


def plan_erasure(database: str, tables: Mapping[str, Sequence[str]], work: str) -> ErasurePlan:
    """The plan for these tables (name -> columns); tables that name nobody are left out."""
    found = {t: predicate_for(cols, work) for t, cols in sorted(tables.items()) if not t.startswith(WORK_PREFIX)}
    return ErasurePlan(database, {t: p for t, p in found.items() if p is not None})


def person_tables(ch: ClickHouse) -> dict[str, list[str]]:
    """Every MergeTree table of the database (the inner tables of materialized views too) with its columns."""
    _, rows = ch.query(
        "SELECT t.name, groupArray(c.name) FROM system.tables AS t "
        "INNER JOIN system.columns AS c ON c.database = t.database AND c.table = t.name "
        "WHERE t.database = {db:String} AND t.engine LIKE '%MergeTree%' GROUP BY t.name",
        {"db": ch.database},
    )
    return {str(name): list(cols) for name, cols in rows}


@dataclass(frozen=True)
class Cluster:
    identifiers: int
    profiles: int


class WorkTable:
    """The identifiers (``id_type``, ``id_value``; profile ids as type ``profile_id``) of the people one
    regulation is about, in a table of the Memory engine: inserted, never written into a statement's text."""

    def __init__(self, ch: ClickHouse, name: str) -> None:
        self.ch = ch
        self.name = f"{ch.database}.{name}"
        self._short = name
        self._have: set[tuple[str, str]] = set()

    def add(self, pairs: Iterable[tuple[str, str]]) -> int:
        new = sorted(set(pairs) - self._have)
        if new:
            self.ch.insert(self._short, new, ["id_type", "id_value"])
            self._have.update(new)
        return len(new)

    def node_keys(self) -> list[str]:
        """The cluster's identifiers as node keys (profile ids included, as ``profile_id:...``)."""
        return sorted(f"{t}:{v}" for t, v in self._have)

    def cluster(self) -> Cluster:
        profiles = sum(1 for t, _ in self._have if t == "profile_id")
        return Cluster(len(self._have) - profiles, profiles)

    def expand(self, max_rounds: int = MAX_ROUNDS) -> Cluster:
        """Grow the subjects to their whole clusters: the profiles their identifiers ever had, the profiles
        merged with those, and every identifier any of them ever held, until nothing new is found."""
        db, w = self.ch.database, self.name
        profiles = f"(SELECT id_value FROM {w} WHERE id_type = 'profile_id')"
        queries = (
            f"SELECT DISTINCT 'profile_id', profile_id FROM {db}.identities_store "
            f"WHERE (id_type, id_value) IN (SELECT id_type, id_value FROM {w})",
            f"SELECT DISTINCT 'profile_id', arrayJoin([from_profile, into_profile]) FROM {db}.merges_store "
            f"WHERE from_profile IN {profiles} OR into_profile IN {profiles}",
            f"SELECT DISTINCT id_type, id_value FROM {db}.identities_store WHERE profile_id IN {profiles}",
        )
        for _ in range(max_rounds):
            found = 0
            for sql in queries:
                _, rows = self.ch.query(sql)
                found += self.add((str(t), str(v)) for t, v in rows if v)
            if not found:
                break
        return self.cluster()


@contextmanager
def work_table(ch: ClickHouse, pairs: Iterable[tuple[str, str]]) -> Iterator[WorkTable]:
    """A work table holding ``pairs``, dropped on leaving whatever happened."""
    name = f"{WORK_PREFIX}{uuid.uuid4().hex[:16]}"
    ch.command(f"CREATE TABLE {ch.database}.{name} (id_type String, id_value String) ENGINE = Memory")
    try:
        work = WorkTable(ch, name)
        work.add(pairs)
        yield work
    finally:
        ch.command(f"DROP TABLE IF EXISTS {ch.database}.{name}")


STALE_AFTER_S = 6 * 3600  # a work table this old is no regulation's any more, whichever process made it


def drop_stale_work_tables(ch: ClickHouse) -> int:
    """Work tables left by a process that stopped mid-regulation (empty: Memory tables lose their rows); only old
    ones, as another query API process on the same server may be running a regulation right now."""
    _, rows = ch.query(
        "SELECT name FROM system.tables WHERE database = {db:String} AND startsWith(name, {p:String}) "
        "AND metadata_modification_time < now() - {age:UInt32}",
        {"db": ch.database, "p": WORK_PREFIX, "age": STALE_AFTER_S},
    )
    for (name,) in rows:
        ch.command(f"DROP TABLE IF EXISTS {ch.database}.{name}")
    return len(rows)


def count_rows(ch: ClickHouse, plan: ErasurePlan) -> dict[str, int]:
    """Rows per table that the plan selects; with ``apply_deleted_mask=0`` also those a lightweight delete only
    masked, so a residual of 0 means no part still holds them."""
    out = {}
    for table in plan.predicates:
        _, rows = ch.query(plan.count_sql(table), settings={"apply_deleted_mask": 0})
        out[table] = int(rows[0][0]) if rows else 0
    return out


def memberships(ch: ClickHouse, work: WorkTable) -> list[tuple[str, str]]:
    """(audience id, member) of every membership, current or past, of the people in ``work``: the keys their
    changes have in the compacted audience-changes topic."""
    plan = plan_erasure(ch.database, {"audience_members": ["member"]}, work.name)
    _, rows = ch.query(
        f"SELECT DISTINCT audience_id, member FROM {ch.database}.audience_members "
        f"WHERE {plan.predicates['audience_members']}"
    )
    return [(str(a), str(m)) for a, m in rows]


def erase(ch: ClickHouse, plan: ErasurePlan, counts: Mapping[str, int]) -> None:
    """One mutation per table that holds any of the people (a table with none is left alone)."""
    for table in plan.predicates:
        if counts.get(table, 1):
            ch.command(plan.delete_sql(table), settings=MUTATION_SETTINGS)
