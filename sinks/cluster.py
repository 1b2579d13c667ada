"""The cluster variant of the schema, generated from the same migrations and views (never a second copy of the DDL).

For a ClickHouse cluster every table becomes a local Replicated table (`<name>_local`, ON CLUSTER) plus a
Distributed table under the original name, sharded so that rows that must collapse together (one
message_id, one identifier, one audience member) live on one shard; views and the sinks keep using the
original names unchanged. Materialized views attach to the local tables, so each shard aggregates its own
inserts.

    python -m sinks.cluster --cluster my_cluster [--db cdp] [--ttl-days 90]  # prints the DDL (default retention
    # otherwise: a `cdp` process re-applies 018 with its own settings at start)
"""

from __future__ import annotations

import argparse
import re
from functools import partial

from sinks.migrate import migration_files, statements, view_definitions
from sinks.retention import Retention

SHARDING_KEYS = {
    "events_store": "cityHash64(message_id)",
    "events_landing": "cityHash64(messageId)",
    "identities_store": "cityHash64(id_type, id_value)",
    "merges_store": "cityHash64(from_profile)",
    "identity_refusals": "cityHash64(node)",
    "anonymous_profiles_store": "cityHash64(id_type, id_value)",
    "audiences": "cityHash64(audience_id)",
    "audience_members": "cityHash64(audience_id, member)",
    # The per-key profile state: materialized views fill these on the shard of the event (its message id), so
    # a message's copies collapse there; the rollup writes a key's totals to the key's shard.
    "events_by_key": "cityHash64(message_id)",
    "profile_keys": "cityHash64(profile_id)",
    "profile_touches": "rand()",
    "profile_traits_by_key": "cityHash64(key)",
    "consent_by_key": "cityHash64(key)",
    "profile_key_totals": "cityHash64(key)",
    "profile_totals": "cityHash64(profile_id)",
    "profile_rollup": "rand()",
}
_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+)\s*\(", re.S)
_CREATE_VIEW = re.compile(r"^CREATE (?:OR REPLACE )?(MATERIALIZED )?VIEW (?:IF NOT EXISTS )?(\w+)\.(\w+)", re.S)
_DROP_VIEW = re.compile(r"^DROP VIEW IF EXISTS (\w+)\.(\w+)$")
_ALTER_TABLE = re.compile(r"^ALTER TABLE (\w+)\.(\w+) ")
_DROP_TABLE = re.compile(r"^DROP TABLE IF EXISTS (\w+)\.(\w+)$")
_INSERT_SELECT = re.compile(r"^INSERT INTO (\w+)\.(\w+)\s+SELECT\b", re.S)
_CREATE_TABLE_AS = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+) AS (\w+)\.(\w+)$")
_ENGINE = re.compile(r"ENGINE\s*=\s*(\w*MergeTree)(\(([^)]*)\))?")


def _replicated(match: re.Match[str], db: str, table: str) -> str:
    engine, args = match.group(1), (match.group(3) or "").strip()
    path = f"'/clickhouse/tables/{{shard}}/{db}/{table}', '{{replica}}'"
    return f"ENGINE = Replicated{engine}({path}{', ' + args if args else ''})"


def cluster_statements(cluster: str, db: str = "cdp", ttl_days: int = 90) -> list[str]:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cluster):
        raise ValueError("cluster: must be a plain identifier")
    out = [f"CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER {cluster}"]
    retention = Retention(anonymous_profiles_days=ttl_days)
    stmts = [stmt for _, _, sql in migration_files() for stmt in statements(sql, db=db, retention=retention)]
    # A new cluster has no history to fill a view's target from: the views are only created.
    stmts += [view.create(db) for view in view_definitions(db=db, retention=retention)]
    tables = {m.group(2) for stmt in stmts if (m := _CREATE_TABLE.match(stmt))}
    for stmt in stmts:
        if m := _CREATE_TABLE.match(stmt):
            table = m.group(2)
            local = f"{table}_local"
            body = stmt.replace(f"{db}.{table}", f"{db}.{local} ON CLUSTER {cluster}", 1)
            body = _ENGINE.sub(partial(_replicated, db=db, table=local), body, count=1)
            out.append(body)
            key = SHARDING_KEYS.get(table, "rand()")
            out.append(
                f"CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER {cluster} AS {db}.{local} "
                f"ENGINE = Distributed({cluster}, {db}, {local}, {key})"
            )
        elif m := _CREATE_VIEW.match(stmt):
            name = m.group(3)
            body = stmt.replace(f"{db}.{name}", f"{db}.{name} ON CLUSTER {cluster}", 1)
            if m.group(1):  # materialized: read and write the shard-local tables
                body = re.sub(rf"\bTO {db}\.(\w+)", rf"TO {db}.\1_local", body, count=1)
                # a view fires on inserts into the table it reads, so it reads the shard-local one
                body = re.sub(
                    rf"\bFROM {db}\.(\w+)\b(?!\()",
                    lambda t: f"FROM {db}.{t.group(1)}_local" if t.group(1) in tables else t.group(0),
                    body,
                )
            out.append(body)
        elif m := _DROP_VIEW.match(stmt):
            out.append(f"{stmt} ON CLUSTER {cluster}")
        elif m := _ALTER_TABLE.match(stmt):  # columns and settings of the shard-local tables
            table = m.group(2)
            out.append(stmt.replace(f"{db}.{table}", f"{db}.{table}_local ON CLUSTER {cluster}", 1))
            if re.search(r"\bADD COLUMN\b", stmt):  # the Distributed table took its columns from the local one
                out.append(stmt.replace(f"{db}.{table}", f"{db}.{table} ON CLUSTER {cluster}", 1))
        elif m := _DROP_TABLE.match(stmt):  # the Distributed table and the shard-local ones
            out.append(f"{stmt} ON CLUSTER {cluster}")
            out.append(f"DROP TABLE IF EXISTS {db}.{m.group(2)}_local ON CLUSTER {cluster}")
        elif _INSERT_SELECT.match(stmt) or _CREATE_TABLE_AS.match(stmt):
            continue  # a migration moving rows between tables (and its rerun's stand-in): a new cluster has none
        else:
            raise ValueError(f"no cluster rule for statement: {stmt[:80]}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster", required=True)
    p.add_argument("--db", default="cdp")
    p.add_argument("--ttl-days", type=int, default=90)
    a = p.parse_args()
    print(";\n\n".join(cluster_statements(a.cluster, a.db, a.ttl_days)) + ";")


if __name__ == "__main__":
    main()
