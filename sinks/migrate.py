"""The schema: versioned migrations for tables, and repeatable definitions for views.

- `sinks/migrations/NNN_name.sql` create, alter or drop tables and move data, applied once each, in order;
  applied versions are recorded in `{db}.schema_migrations`. Every statement is also written to be re-runnable
  (`IF NOT EXISTS`, a drop before a rebuild), so a crash half-way through a file is repaired by the next start.
- `sinks/views/<view>.sql` hold the CURRENT definition of each view and materialized view, one statement per
  file (`CREATE [MATERIALIZED] VIEW {db}.<view> [TO {db}.<table>] AS SELECT ...`). After the migrations, a view
  whose file changed since it was last applied (its checksum in `{db}.schema_views`), or which is missing, is
  created again, in dependency order. So a view is changed by editing its file, and no migration restates a
  SELECT: the history of a view is the history of its file. A view whose stored SELECT already equals the file
  (the engine formats both) is only recorded, so an upgrade does not re-create it.
- A materialized view is re-created by a drop and a create, at start, before this process's sinks write. A file
  may declare `-- history: <view> in place of <source>`: when the view is created over an empty target, the
  target is filled from the history (the same SELECT with `<source>` replaced by `<view>`), which is how a
  migration that rebuilds an aggregate table gets its past back. That needs an idempotent aggregation (rows
  landing between the create and the fill are aggregated twice). Such a view is created after the materialized
  views that read its target, so the fill reaches their targets too.
- A migration whose first line is `-- reapplied when the settings it renders change` (the retention TTLs) is
  applied again whenever its rendered statements differ from the last applied (their checksum is recorded with
  the version), so such a setting takes effect at the next start. Its statements must be idempotent. Before it
  runs, the events of cookies identified since their events were stored are marked (sinks/retention.py), so a
  TTL applied to the parts at once never takes them for never-identified ones.
Placeholders: `{db}` the database, and the retention days (sinks/retention.py): `{ttl_days}` the anonymous
profiles', `{anonymous_events_ttl_days}`, `{refusals_ttl_days}`, `{audience_history_ttl_days}`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from graphlib import TopologicalSorter
from importlib import resources

from sinks.clickhouse import ClickHouse
from sinks.retention import Retention, mark_identified

_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_VIEW_FILE = re.compile(r"^([a-z0-9_]+)\.sql$")
_VIEW = re.compile(
    r"^CREATE (MATERIALIZED )?VIEW \{db\}\.(\w+)(?: TO \{db\}\.(\w+))? AS\s+(SELECT\b.*)$",
    re.S,
)
_HISTORY = re.compile(r"^-- history: (\w+) in place of (\w+)$", re.M)
_REFERENCE = re.compile(r"\{db\}\.(\w+)")
REAPPLIED = "-- reapplied when the settings it renders change"
DEFAULT_RETENTION = Retention()


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every packaged migration, in version order."""
    out = []
    for entry in resources.files("sinks.migrations").iterdir():
        m = _FILE.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text()))
    return sorted(out)


def _render(sql: str, *, db: str, retention: Retention) -> str:
    sql = sql.replace("{db}", db)
    for name, days in retention.placeholders().items():
        sql = sql.replace(f"{{{name}}}", str(int(days)))
    return sql


def statements(sql: str, *, db: str, retention: Retention = DEFAULT_RETENTION) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in _render(body, db=db, retention=retention).split(";") if s.strip()]


@dataclass(frozen=True)
class ViewDef:
    """One file of `sinks/views/`, rendered for a database."""

    name: str
    select: str
    materialized: bool
    target: str | None
    history: tuple[str, str] | None  # (view holding the history, the source it stands in for)
    checksum: str

    def create(self, db: str) -> str:
        """The statement that makes the view as the file says, replacing what was there."""
        if not self.materialized:
            return f"CREATE OR REPLACE VIEW {db}.{self.name} AS {self.select}"
        return f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{self.name} TO {db}.{self.target} AS {self.select}"


def parse_view(name: str, text: str, *, db: str, retention: Retention = DEFAULT_RETENTION) -> tuple[ViewDef, set[str]]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip()
    m = _VIEW.match(body.rstrip(";").strip())
    if not m or m.group(2) != name or ";" in m.group(4):
        raise ValueError(f"sinks/views/{name}.sql: one CREATE [MATERIALIZED] VIEW {{db}}.{name} ... AS SELECT")
    materialized, target, select = bool(m.group(1)), m.group(3), m.group(4)
    if materialized != bool(target):
        raise ValueError(f"sinks/views/{name}.sql: a materialized view writes TO a table, a plain view does not")
    history = None
    if h := _HISTORY.search(text):
        history = (h.group(1), h.group(2))
        if not materialized or len(re.findall(rf"\{{db\}}\.{history[1]}\b", select)) != 1:
            raise ValueError(f"sinks/views/{name}.sql: a history stands in for the one source of a materialized view")
    rendered = _render(select, db=db, retention=retention)
    checksum = hashlib.sha256(f"{materialized}|{target}|{history}|{rendered}".encode()).hexdigest()
    deps = set(_REFERENCE.findall(select)) | ({history[0]} if history else set())
    return ViewDef(name, rendered, materialized, target, history, checksum), deps - {name}


def view_definitions(*, db: str, retention: Retention = DEFAULT_RETENTION) -> list[ViewDef]:
    """Every view of `sinks/views/`, each after the views it reads."""
    views: dict[str, ViewDef] = {}
    graph: dict[str, set[str]] = {}
    for entry in sorted(resources.files("sinks.views").iterdir(), key=lambda e: e.name):
        if m := _VIEW_FILE.match(entry.name):
            view, deps = parse_view(m.group(1), entry.read_text(), db=db, retention=retention)
            views[view.name], graph[view.name] = view, deps
    for name, view in views.items():  # a fill from history flows on into the views reading the filled table
        if view.history is not None:
            graph[name] |= {other for other, deps in graph.items() if views[other].materialized and view.target in deps}
    order = TopologicalSorter({name: deps & views.keys() for name, deps in graph.items()}).static_order()
    return [views[name] for name in order]


def _fill_from_history(ch: ClickHouse, view: ViewDef) -> None:
    assert view.history is not None
    db = ch.database
    history, source = view.history
    select = re.sub(rf"\b{db}\.{source}\b", f"{db}.{history}", view.select)
    ch.command(f"INSERT INTO {db}.{view.target} {select}")


def apply_views(ch: ClickHouse, *, retention: Retention = DEFAULT_RETENTION) -> list[str]:
    """Create every view whose file changed or which is missing; returns their file names."""
    db = ch.database
    ch.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_views (name String, checksum String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree(applied_at) ORDER BY name"
    )
    _, rows = ch.query(f"SELECT name, argMax(checksum, applied_at) FROM {db}.schema_views GROUP BY name")
    recorded = {r[0]: r[1] for r in rows}
    _, rows = ch.query("SELECT name, as_select FROM system.tables WHERE database = {db:String}", {"db": db})
    existing = {r[0]: r[1] for r in rows}
    applied = []
    for view in view_definitions(db=db, retention=retention):
        if recorded.get(view.name) == view.checksum and view.name in existing:
            continue
        same = view.name in existing and existing[view.name] == ch.scalar(
            "SELECT formatQuerySingleLine({q:String})", {"q": view.select}
        )
        if not same:
            _create(ch, view)
            applied.append(f"{view.name}.sql")
        ch.insert("schema_views", [(view.name, view.checksum)], ["name", "checksum"])
    return applied


def _create(ch: ClickHouse, view: ViewDef) -> None:
    db = ch.database
    if not view.materialized:
        ch.command(view.create(db))
        return
    fill = view.history is not None and not ch.scalar(f"SELECT count() FROM {db}.{view.target}")
    ch.command(f"DROP VIEW IF EXISTS {db}.{view.name}")
    ch.command(view.create(db))
    if fill:
        _fill_from_history(ch, view)


def migrate(ch: ClickHouse, *, retention: Retention = DEFAULT_RETENTION) -> list[str]:
    """Apply pending migrations, then the views; returns the file names applied (empty when up to date)."""
    db = ch.database
    ch.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    ch.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    ch.command(f"ALTER TABLE {db}.schema_migrations ADD COLUMN IF NOT EXISTS checksum String")
    _, rows = ch.query(f"SELECT version, argMax(checksum, applied_at) FROM {db}.schema_migrations GROUP BY version")
    done = {r[0]: r[1] for r in rows}
    applied = []
    for version, name, sql in migration_files():
        stmts = statements(sql, db=db, retention=retention)
        reapplied = sql.startswith(REAPPLIED)
        checksum = hashlib.sha256(";".join(stmts).encode()).hexdigest() if reapplied else ""
        if version in done and done[version] == checksum:
            continue
        if reapplied:
            mark_identified(ch)
        for stmt in stmts:
            ch.command(stmt)
        ch.insert("schema_migrations", [(version, name, checksum)], ["version", "name", "checksum"])
        applied.append(name)
    return applied + apply_views(ch, retention=retention)
