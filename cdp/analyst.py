"""Analyst SQL (sinks/analyst.py) built from the settings: one place for the service and `cdp sql`."""

from __future__ import annotations

from dataclasses import fields

from schemas.settings import Settings
from sinks.analyst import AnalystSql, SqlLimits


def sql_limits(settings: Settings) -> SqlLimits:
    """Each limit from its setting `sql_<field>` (`CDP_SQL_<FIELD>`)."""
    return SqlLimits(**{f.name: getattr(settings, f"sql_{f.name}") for f in fields(SqlLimits)})


def analyst_sql(settings: Settings, clients: int | None = None) -> AnalystSql:
    """As many engine clients as analyst queries may run at once (the HTTP route holds them to that)."""
    return AnalystSql(
        settings.clickhouse_url,
        settings.clickhouse_database,
        sql_limits(settings),
        clients=clients or settings.sql_concurrency,
    )
