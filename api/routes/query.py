"""Analyst SQL over HTTP: POST /v1/sql (admin). Read-only, see sinks/readonly.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from api.auth import admin
from api.deps import Services
from sinks.readonly import ReadOnlyViolation, run_readonly

router = APIRouter()


class SqlRequest(BaseModel):
    query: str = Field(min_length=1, max_length=100_000)


class SqlResponse(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


@router.post("/v1/sql", dependencies=[Depends(admin)], response_model=SqlResponse, tags=["query"])
def sql(body: SqlRequest, request: Request) -> Any:
    services: Services = request.app.state.services
    if services.ch is None:
        raise HTTPException(503, "this process has no ClickHouse connection")
    try:
        columns, rows = run_readonly(services.ch, body.query)
    except ReadOnlyViolation as exc:
        raise HTTPException(400, f"query: {exc}") from exc
    except Exception as exc:  # the engine's own message (syntax, unknown column) is what the analyst needs
        raise HTTPException(400, f"query failed: {str(exc).splitlines()[0][:500]}") from exc
    return {"columns": columns, "rows": jsonable_encoder(rows)}
