"""The cluster DDL is generated from the same migrations and views and parsed by the real engine."""

import pytest

from sinks.cluster import SHARDING_KEYS, cluster_statements
from sinks.migrate import migration_files, statements


def test_every_cluster_statement_parses(ch) -> None:
    stmts = cluster_statements("prod", db="cdp")
    for stmt in stmts:
        formatted = ch.scalar("SELECT formatQuery({q:String})", {"q": stmt})  # raises on a syntax error
        assert "ON CLUSTER prod" in formatted


def test_every_table_becomes_replicated_plus_distributed() -> None:
    stmts = cluster_statements("prod", db="cdp")
    tables = {
        s.split()[5]
        for _, _, sql in migration_files()
        for s in statements(sql, db="cdp")
        if s.startswith("CREATE TABLE") and s.split()[6] != "AS"  # not a rerun's stand-in (CREATE TABLE x AS y)
    }
    assert tables == {f"cdp.{table}" for table in SHARDING_KEYS}
    for table in SHARDING_KEYS:
        local = next(s for s in stmts if s.startswith(f"CREATE TABLE IF NOT EXISTS cdp.{table}_local "))
        if "ENGINE = Null" not in local:  # a landing table keeps nothing, so there is nothing to replicate
            assert "ENGINE = Replicated" in local and "'{replica}'" in local
        dist = next(s for s in stmts if s.startswith(f"CREATE TABLE IF NOT EXISTS cdp.{table} ON CLUSTER"))
        assert f"Distributed(prod, cdp, {table}_local, {SHARDING_KEYS[table]})" in dist


def test_materialized_views_write_shard_locally() -> None:
    mvs = [s for s in cluster_statements("prod") if "MATERIALIZED VIEW" in s]
    assert any("TO cdp.anonymous_profiles_store_local" in mv and "FROM cdp.events_landing_local" in mv for mv in mvs)
    assert any("TO cdp.events_store_local" in mv and "FROM cdp.events_landing_local" in mv for mv in mvs)


def test_later_migrations_alter_and_drop_on_the_cluster() -> None:
    stmts = cluster_statements("prod")
    assert "DROP VIEW IF EXISTS cdp.anonymous_profiles_mv ON CLUSTER prod" in stmts
    assert "DROP TABLE IF EXISTS cdp.anonymous_profiles_store ON CLUSTER prod" in stmts
    assert "DROP TABLE IF EXISTS cdp.anonymous_profiles_store_local ON CLUSTER prod" in stmts
    alter = next(s for s in stmts if s.startswith("ALTER TABLE"))
    assert alter.startswith("ALTER TABLE cdp.events_landing_local ON CLUSTER prod ADD COLUMN")


def test_every_view_is_made_on_the_cluster_after_its_tables() -> None:
    stmts = cluster_statements("prod")
    views = [s for s in stmts if " VIEW " in s and not s.startswith("DROP")]
    assert {s.split(" ON CLUSTER")[0].split()[-1] for s in views} >= {"cdp.profiles", "cdp.events_landing_mv"}
    last_table = max(i for i, s in enumerate(stmts) if s.startswith("CREATE TABLE"))
    assert all(stmts.index(v) > last_table for v in views)


def test_cluster_name_is_checked() -> None:
    with pytest.raises(ValueError):
        cluster_statements("prod; DROP TABLE x")
