"""Analyst SQL over HTTP: POST /v1/sql (analyst or admin token). Checked and limited in sinks/analyst.py.

At most `CDP_SQL_CONCURRENCY` statements run at once, so analysts never take every engine thread of the
process that also collects and stitches; a statement that finds no free slot within `CDP_SQL_QUEUE_S` is
answered 429. A slot is given back when the engine call ends, not when the request does: a client that hangs
up does not stop the query it started, so its slot stays taken until the engine is done.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field, ValidationError

from api.auth import analyst
from api.body import BadBody, parse_json_body
from api.deps import Services
from sinks.analyst import AnalystSql, SqlLimitExceeded, engine_message
from sinks.sql_guard import SqlRefused

router = APIRouter()


class SqlRequest(BaseModel):
    query: str = Field(min_length=1, max_length=100_000)


class SqlResponse(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


@router.post("/v1/sql", dependencies=[Depends(analyst)], response_model=SqlResponse, tags=["query"])
async def sql(request: Request) -> Any:
    """Body `{"query": "..."}`, read as JSON whatever the content type (curl sends form encoding)."""
    services: Services = request.app.state.services
    try:
        body = SqlRequest.model_validate(parse_json_body(await request.body()))
    except BadBody as exc:
        raise HTTPException(400, f"body: {exc}") from exc
    except ValidationError as exc:
        raise HTTPException(
            422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from exc
    if services.analyst is None:
        raise HTTPException(503, "this process has no ClickHouse connection")
    slots = _slots(request, services.settings.sql_concurrency)
    try:
        await asyncio.wait_for(slots.acquire(), timeout=services.settings.sql_queue_s)
    except TimeoutError as exc:
        raise HTTPException(
            429,
            f"too many analyst queries at once (limit CDP_SQL_CONCURRENCY={services.settings.sql_concurrency})",
            headers={"Retry-After": "1"},
        ) from exc
    running = asyncio.get_running_loop().run_in_executor(None, _run, services.analyst, body.query)
    running.add_done_callback(lambda _: slots.release())
    return await asyncio.shield(running)


def _slots(request: Request, size: int) -> asyncio.Semaphore:
    slots: asyncio.Semaphore | None = getattr(request.app.state, "sql_slots", None)
    if slots is None:
        slots = request.app.state.sql_slots = asyncio.Semaphore(size)
    return slots


def _run(analyst_sql: AnalystSql, query: str) -> Any:
    try:
        columns, rows = analyst_sql.run(query)
    except SqlRefused as exc:
        raise HTTPException(400, f"query refused: {exc}") from exc
    except SqlLimitExceeded as exc:
        raise HTTPException(400, f"query stopped: {exc}") from exc
    except Exception as exc:  # the engine's own message (syntax, unknown column) is what the analyst needs
        raise HTTPException(400, f"query failed: {engine_message(exc)}") from exc
    return {"columns": columns, "rows": jsonable_encoder(rows)}
