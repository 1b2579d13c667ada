"""Audience definitions and members: POST/GET /v1/audiences, GET/PUT/DELETE /v1/audiences/{id},
GET /v1/audiences/{id}/members (streamed JSON Lines or CSV), and for the console POST /v1/audiences/preview (the
size a definition would have, nothing stored) and GET /v1/audiences/{id}/history (size per day). Reading and
previewing take the analyst (or admin) token; creating, editing and deleting the admin token."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse

from api.auth import admin, analyst
from api.deps import AudiencesDep, ClickHouseDep, JsonBody, ProducerDep, ServicesDep, SettingsDep
from api.errors import ApiError
from api.openapi import json_body
from schemas.audience import AudienceCreate, default_purpose, parse_audience
from schemas.settings import Settings
from sinks.audience_sql import compile_audience
from sinks.clickhouse import ClickHouse
from sinks.console_reads import membership_history, preview_size
from streams.audiences import AudienceDefinitions, Definition
from streams.producer import AsyncProducer

router = APIRouter(tags=["audiences"])


def _view(d: Definition, size: int | None) -> dict[str, Any]:
    return {
        "id": d["id"],
        "name": d["name"],
        "scope": d["scope"],
        "rule": d["rule"],
        "description": d.get("description"),
        "purpose": d.get("purpose") or default_purpose(d["scope"]),
        "created_at_ms": d["created_at_ms"],
        "size": size,
    }


def _sizes(ch: ClickHouse | None) -> dict[str, int]:
    if ch is None:
        return {}
    _, rows = ch.query(f"SELECT audience_id, count() FROM {ch.database}.audience_members_current GROUP BY audience_id")
    return {a: n for a, n in rows}


def _existing(audiences: AudienceDefinitions, audience_id: str) -> Definition:
    definition = audiences.get(audience_id)
    if definition is None:
        raise ApiError(404, f"audience {audience_id} not found")
    return definition


async def _store(
    payload: Any,
    audiences: AudienceDefinitions,
    producer: AsyncProducer,
    settings: Settings,
    existing: Definition | None = None,
) -> Definition:
    """Validate and compile a definition (422 naming the rule's path), then store it, new or replacing ``existing``."""
    spec = parse_audience(payload)
    compile_audience(spec.rule, spec.scope, settings.clickhouse_database, purpose=spec.effective_purpose)
    return await audiences.create(
        producer,
        spec.name,
        spec.scope,
        payload["rule"],
        spec.description,
        settings.produce_timeout_s,
        existing,
        purpose=spec.effective_purpose,
    )


@router.post("/v1/audiences", status_code=201, dependencies=[Depends(admin)], openapi_extra=json_body(AudienceCreate))
async def create_audience(
    payload: JsonBody, audiences: AudiencesDep, producer: ProducerDep, settings: SettingsDep
) -> JSONResponse:
    """A rule the compiler refuses is a 422 naming its path (``rule.all[2].where[0].op``), raised as RuleError."""
    definition = await _store(payload, audiences, producer, settings)
    return JSONResponse(_view(definition, 0), status_code=201)


@router.post("/v1/audiences/preview", dependencies=[Depends(analyst)])
def preview_audience(payload: JsonBody, ch: ClickHouseDep) -> dict[str, Any]:
    """The body of a POST /v1/audiences, validated the same way (422 naming the rule's path), and its size now."""
    spec = parse_audience(payload)
    compiled = compile_audience(spec.rule, spec.scope, ch.database, purpose=spec.effective_purpose)
    return {"size": preview_size(ch, compiled)}


@router.put("/v1/audiences/{audience_id}", dependencies=[Depends(admin)])
async def replace_audience(
    audience_id: str, payload: JsonBody, audiences: AudiencesDep, producer: ProducerDep, services: ServicesDep
) -> dict[str, Any]:
    existing = _existing(audiences, audience_id)
    definition = await _store(payload, audiences, producer, services.settings, existing)
    return _view(definition, _sizes(services.ch).get(audience_id, 0))


@router.get("/v1/audiences/{audience_id}/history", dependencies=[Depends(analyst)])
def audience_history(audience_id: str, audiences: AudiencesDep, ch: ClickHouseDep) -> dict[str, Any]:
    _existing(audiences, audience_id)
    return {"days": membership_history(ch, audience_id)}


@router.get("/v1/audiences", dependencies=[Depends(analyst)])
def list_audiences(audiences: AudiencesDep, services: ServicesDep) -> dict[str, Any]:
    sizes = _sizes(services.ch)
    return {"audiences": [_view(d, sizes.get(d["id"], 0)) for d in audiences.all()]}


@router.get("/v1/audiences/{audience_id}", dependencies=[Depends(analyst)])
def get_audience(audience_id: str, audiences: AudiencesDep, services: ServicesDep) -> dict[str, Any]:
    definition = _existing(audiences, audience_id)
    return _view(definition, _sizes(services.ch).get(audience_id, 0))


@router.delete("/v1/audiences/{audience_id}", status_code=204, dependencies=[Depends(admin)])
async def delete_audience(
    audience_id: str, audiences: AudiencesDep, producer: ProducerDep, settings: SettingsDep
) -> None:
    _existing(audiences, audience_id)
    await audiences.delete(producer, audience_id, settings.produce_timeout_s)


@router.get("/v1/audiences/{audience_id}/members", dependencies=[Depends(analyst)])
def audience_members(
    audience_id: str, audiences: AudiencesDep, ch: ClickHouseDep, format: str = "jsonl"
) -> StreamingResponse:
    _existing(audiences, audience_id)
    if format not in ("jsonl", "csv"):
        raise ApiError(400, "format: must be jsonl or csv")
    _, rows = ch.query(
        f"SELECT member, member_type, since FROM {ch.database}.audience_members_current "
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
