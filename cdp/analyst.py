"""Analyst SQL (sinks/analyst.py) built from the settings: one place for the service and `cdp sql`."""

from __future__ import annotations

from cdp.settings import Settings
from sinks.analyst import AnalystSql, SqlLimits


def sql_limits(settings: Settings) -> SqlLimits:
    return SqlLimits(
        max_memory_mb=settings.sql_max_memory_mb,
        max_rows_read=settings.sql_max_rows_read,
        max_read_mb=settings.sql_max_read_mb,
        max_result_rows=settings.sql_max_result_rows,
        max_result_mb=settings.sql_max_result_mb,
        timeout_s=settings.sql_timeout_s,
        max_threads=settings.sql_max_threads,
    )


def analyst_sql(settings: Settings, clients: int | None = None) -> AnalystSql:
    """As many engine clients as analyst queries may run at once (the HTTP route holds them to that)."""
    return AnalystSql(
        settings.clickhouse_url,
        settings.clickhouse_database,
        sql_limits(settings),
        clients=clients or settings.sql_concurrency,
    )
