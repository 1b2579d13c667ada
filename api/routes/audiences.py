"""Audience definitions and members: POST/GET /v1/audiences, GET/DELETE /v1/audiences/{id},
GET /v1/audiences/{id}/members (streamed JSON Lines or CSV). Reading takes the analyst (or admin) token;
creating and deleting the admin token."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse

from api.auth import admin, analyst
from api.body import BodyError, parse_json_body
from api.deps import Services
from schemas.audience import AudienceCreate, RuleError, validate_rule
from sinks.audience_sql import compile_audience
from streams.producer import ProduceTimeout

router = APIRouter(tags=["audiences"])


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    if services.extra.get("audiences") is None:
        raise HTTPException(503, "audiences are not served by this process")
    return services


def _view(d: dict[str, Any], size: int | None) -> dict[str, Any]:
    return {
        "id": d["id"],
        "name": d["name"],
        "scope": d["scope"],
        "rule": d["rule"],
        "description": d.get("description"),
        "created_at_ms": d["created_at_ms"],
        "size": size,
    }


def _sizes(services: Services) -> dict[str, int]:
    if services.ch is None:
        return {}
    _, rows = services.ch.query(
        f"SELECT audience_id, count() FROM {services.ch.database}.audience_members_current GROUP BY audience_id"
    )
    return {a: n for a, n in rows}


@router.post("/v1/audiences", status_code=201, dependencies=[Depends(admin)])
async def create_audience(request: Request) -> JSONResponse:
    services = _services(request)
    try:
        payload = parse_json_body(await request.body())
    except BodyError as exc:
        raise HTTPException(exc.status_code, f"body: {exc}") from exc
    try:
        rule = validate_rule(payload.get("rule"), payload.get("scope", "profile"))
        spec = AudienceCreate.model_validate(payload)
        compile_audience(rule, spec.scope, services.settings.clickhouse_database)
    except RuleError as exc:
        return JSONResponse(
            {"success": False, "error": f"{exc.path}: {exc.msg}", "errors": [{"loc": exc.path, "msg": exc.msg}]},
            status_code=422,
        )
    except ValueError as exc:  # pydantic ValidationError of name/scope
        return JSONResponse({"success": False, "error": str(exc).splitlines()[0]}, status_code=422)
    assert services.producer is not None
    try:
        definition = await services.extra["audiences"].create(
            services.producer,
            spec.name,
            spec.scope,
            payload["rule"],
            spec.description,
            services.settings.produce_timeout_s,
        )
    except ProduceTimeout as exc:
        raise HTTPException(503, "event log unavailable, retry later", headers={"Retry-After": "5"}) from exc
    return JSONResponse(_view(definition, 0), status_code=201)


@router.get("/v1/audiences", dependencies=[Depends(analyst)])
def list_audiences(request: Request) -> dict[str, Any]:
    services = _services(request)
    sizes = _sizes(services)
    return {"audiences": [_view(d, sizes.get(d["id"], 0)) for d in services.extra["audiences"].all()]}


@router.get("/v1/audiences/{audience_id}", dependencies=[Depends(analyst)])
def get_audience(audience_id: str, request: Request) -> dict[str, Any]:
    services = _services(request)
    d = services.extra["audiences"].get(audience_id)
    if d is None:
        raise HTTPException(404, f"audience {audience_id} not found")
    return _view(d, _sizes(services).get(audience_id, 0))


@router.delete("/v1/audiences/{audience_id}", status_code=204, dependencies=[Depends(admin)])
async def delete_audience(audience_id: str, request: Request) -> None:
    services = _services(request)
    if services.extra["audiences"].get(audience_id) is None:
        raise HTTPException(404, f"audience {audience_id} not found")
    assert services.producer is not None
    await services.extra["audiences"].delete(services.producer, audience_id, services.settings.produce_timeout_s)


@router.get("/v1/audiences/{audience_id}/members", dependencies=[Depends(analyst)])
def audience_members(audience_id: str, request: Request, format: str = "jsonl") -> StreamingResponse:
    services = _services(request)
    if services.extra["audiences"].get(audience_id) is None:
        raise HTTPException(404, f"audience {audience_id} not found")
    if format not in ("jsonl", "csv"):
        raise HTTPException(400, "format: must be jsonl or csv")
    if services.ch is None:
        raise HTTPException(503, "this process has no ClickHouse connection")
    _, rows = services.ch.query(
        f"SELECT member, member_type, since FROM {services.ch.database}.audience_members_current "
        "WHERE audience_id = {a:String} ORDER BY member",
        {"a": audience_id},
    )

    def jsonl() -> Iterator[bytes]:
        for member, member_type, since in rows:
            yield orjson.dumps({"member": member, "member_type": member_type, "since": since}) + b"\n"

    def as_csv() -> Iterator[str]:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["member", "member_type", "since"])
        for i, (member, member_type, since) in enumerate(rows, 1):
            w.writerow([member, member_type, since.isoformat()])
            if i % 1000 == 0:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    if format == "csv":
        return StreamingResponse(as_csv(), media_type="text/csv")
    return StreamingResponse(jsonl(), media_type="application/x-ndjson")
