"""Analyst SQL over HTTP: POST /v1/sql (admin). Read-only, see sinks/readonly.py."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field, ValidationError

from api.auth import admin
from api.body import BadBody, parse_json_body
from api.deps import Services
from sinks.readonly import ReadOnlyViolation, run_readonly

router = APIRouter()


class SqlRequest(BaseModel):
    query: str = Field(min_length=1, max_length=100_000)


class SqlResponse(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


@router.post("/v1/sql", dependencies=[Depends(admin)], response_model=SqlResponse, tags=["query"])
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
    return await asyncio.to_thread(_run, services, body.query)


def _run(services: Services, query: str) -> Any:
    if services.ch is None:
        raise HTTPException(503, "this process has no ClickHouse connection")
    try:
        columns, rows = run_readonly(services.ch, query)
    except ReadOnlyViolation as exc:
        raise HTTPException(400, f"query: {exc}") from exc
    except Exception as exc:  # the engine's own message (syntax, unknown column) is what the analyst needs
        raise HTTPException(400, f"query failed: {str(exc).splitlines()[0][:500]}") from exc
    return {"columns": columns, "rows": jsonable_encoder(rows)}
