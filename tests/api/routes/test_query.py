"""POST /v1/sql answers its refusals with the documented body: a bad body 422 naming the field, a refused
statement 400 naming why (the engine is a stand-in; the guard itself is tested in tests/sinks)."""

from __future__ import annotations

from typing import Any, cast

from sinks.analyst import AnalystSql
from sinks.sql_guard import SqlRefused
from tests.api.routes.fixtures import ADMIN, client, error_of, services


class Engine:
    def run(self, query: str) -> tuple[list[str], list[list[Any]]]:
        if query.startswith("DROP"):
            raise SqlRefused("DROP is not a read")
        return ["one"], [[1]]


def test_an_answer_a_refused_statement_and_a_bad_body() -> None:
    s = services()
    s.analyst = cast(AnalystSql, Engine())
    http = client(s)
    assert http.post("/v1/sql", json={"query": "SELECT 1"}, headers=ADMIN).json() == {"columns": ["one"], "rows": [[1]]}
    refused = error_of(http.post("/v1/sql", json={"query": "DROP TABLE cdp.events"}, headers=ADMIN), 400)
    assert refused["error"] == "query refused: DROP is not a read"
    empty = error_of(http.post("/v1/sql", json={"query": ""}, headers=ADMIN), 422)
    assert [e["loc"] for e in empty["errors"]] == ["query"]
