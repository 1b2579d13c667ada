"""Analyst SQL over HTTP: POST /v1/sql (analyst or admin token). Checked and limited in sinks/analyst.py.

At most `CDP_SQL_CONCURRENCY` statements run at once, so analysts never take every engine thread of the
process that also collects and stitches; a statement that finds no free slot within `CDP_SQL_QUEUE_S` is
answered 429. A slot is given back when the engine call ends, not when the request does: a client that hangs
up does not stop the query it started, so its slot stays taken until the engine is done.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from api.auth import analyst
from api.deps import AnalystSqlDep, JsonBody, SettingsDep
from api.errors import ApiError
from api.openapi import json_body
from sinks.analyst import AnalystSql, SqlLimitExceeded, engine_message
from sinks.sql_guard import SqlRefused

router = APIRouter(tags=["query"])


class SqlRequest(BaseModel):
    query: str = Field(min_length=1, max_length=100_000)


class SqlResponse(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


@router.post(
    "/v1/sql", dependencies=[Depends(analyst)], response_model=SqlResponse, openapi_extra=json_body(SqlRequest)
)
async def sql(request: Request, body: JsonBody, engine: AnalystSqlDep, settings: SettingsDep) -> Any:
    """Body `{"query": "..."}`, read as JSON whatever the content type (curl sends form encoding)."""
    query = SqlRequest.model_validate(body).query
    slots = _slots(request, settings.sql_concurrency)
    try:
        await asyncio.wait_for(slots.acquire(), timeout=settings.sql_queue_s)
    except TimeoutError as exc:
        raise ApiError(
            429,
            f"too many analyst queries at once (limit CDP_SQL_CONCURRENCY={settings.sql_concurrency})",
            headers={"Retry-After": "1"},
        ) from exc
    running = asyncio.get_running_loop().run_in_executor(None, _run, engine, query)
    running.add_done_callback(lambda _: slots.release())
    return await asyncio.shield(running)


def _slots(request: Request, size: int) -> asyncio.Semaphore:
    slots: asyncio.Semaphore | None = getattr(request.app.state, "sql_slots", None)
    if slots is None:
        slots = request.app.state.sql_slots = asyncio.Semaphore(size)
    return slots


def _run(engine: AnalystSql, query: str) -> dict[str, Any]:
    try:
        columns, rows = engine.run(query)
    except SqlRefused as exc:
        raise ApiError(400, f"query refused: {exc}") from exc
    except SqlLimitExceeded as exc:
        raise ApiError(400, f"query stopped: {exc}") from exc
    except Exception as exc:  # the engine's own message (syntax, unknown column) is what the analyst needs
        raise ApiError(400, f"query failed: {engine_message(exc)}") from exc
    return {"columns": columns, "rows": jsonable_encoder(rows)}
