"""Every limit of an analyst query is enforced by the embedded engine and named in the refusal."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cdp.analyst import sql_limits
from schemas.settings import Settings
from sinks.analyst import AnalystSql, SqlLimitExceeded, SqlLimits
from sinks.clickhouse import ClickHouse

DEFAULTS = sql_limits(Settings())


def limits(**over: Any) -> SqlLimits:
    return replace(DEFAULTS, **over)


def run(db: ClickHouse, limits: SqlLimits, query: str) -> list[list[Any]]:
    sql = AnalystSql(db.url, db.database, limits)
    try:
        return sql.run(query)[1]
    finally:
        sql.close()


@pytest.mark.parametrize(
    "capped,query,named",
    [
        (limits(max_memory_mb=64), "SELECT length(groupArray(number)) FROM numbers(30000000)", "MAX_MEMORY_MB=64"),
        (limits(max_rows_read=1000), "SELECT sum(number) FROM numbers(100000)", "MAX_ROWS_READ=1000"),
        (limits(max_read_mb=1), "SELECT sum(number) FROM numbers(10000000)", "MAX_READ_MB=1"),
        (limits(max_result_rows=10), "SELECT number FROM numbers(100000)", "MAX_RESULT_ROWS=10"),
        (limits(max_result_mb=1), "SELECT repeat(toString(number), 100) FROM numbers(100000)", "MAX_RESULT_MB=1"),
        (
            limits(timeout_s=0.5),
            "SELECT count() FROM numbers(100000000) WHERE cityHash64(toString(number)) = 1",
            "TIMEOUT_S=0.5",
        ),
    ],
)
def test_a_query_over_a_limit_is_stopped_naming_it(
    module_db: ClickHouse, capped: SqlLimits, query: str, named: str
) -> None:
    with pytest.raises(SqlLimitExceeded) as over:
        run(module_db, capped, query)
    assert over.value.limit == f"CDP_SQL_{named}"


def test_under_the_limits_the_same_queries_answer(module_db: ClickHouse) -> None:
    assert run(module_db, DEFAULTS, "SELECT sum(number) FROM numbers(100000)") == [[4999950000]]


def test_the_session_holds_the_threads_limit_and_readonly(module_db: ClickHouse) -> None:
    query = "SELECT getSetting('max_threads'), getSetting('readonly')"
    assert run(module_db, limits(max_threads=1), query) == [[1, 1]]


def test_the_pipelines_own_client_keeps_no_limits(module_db: ClickHouse) -> None:
    run(module_db, limits(max_result_rows=10), "SELECT 1")
    _, rows = module_db.query("SELECT number FROM numbers(1000)")
    assert len(rows) == 1000
