"""Versioned, idempotent schema migrations: `sinks/migrations/NNN_name.sql`, applied in order at start.

Applied versions are recorded in `{db}.schema_migrations`; every statement is also written to be re-runnable
(`IF NOT EXISTS`), so a crash half-way through a file is repaired by the next start.
Placeholders: `{db}` the database, `{ttl_days}` the anonymous-profile retention.
"""

from __future__ import annotations

import re
from importlib import resources

from sinks.clickhouse import ClickHouse

_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every packaged migration, in version order."""
    out = []
    for entry in resources.files("sinks.migrations").iterdir():
        m = _FILE.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text()))
    return sorted(out)


def statements(sql: str, *, db: str, ttl_days: int) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    rendered = body.replace("{db}", db).replace("{ttl_days}", str(int(ttl_days)))
    return [s.strip() for s in rendered.split(";") if s.strip()]


def migrate(ch: ClickHouse, *, ttl_days: int = 90) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date)."""
    db = ch.database
    ch.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    ch.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    _, rows = ch.query(f"SELECT version FROM {db}.schema_migrations")
    done = {r[0] for r in rows}
    applied = []
    for version, name, sql in migration_files():
        if version in done:
            continue
        for stmt in statements(sql, db=db, ttl_days=ttl_days):
            ch.command(stmt)
        ch.insert("schema_migrations", [(version, name)], ["version", "name"])
        applied.append(name)
    return applied
