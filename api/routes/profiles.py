"""Profile and audience lookups by any identifier.

GET /v1/lookup/{id_type}/{value}   read, analyst or admin token; the low-latency path: the in-memory index.
GET /v1/profiles/{id_type}/{value} read, analyst or admin token; the 360-degree view from ClickHouse.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response

from api.auth import reader
from api.deps import Services
from identity.normalise import normalise_email, normalise_phone

router = APIRouter(dependencies=[Depends(reader)], tags=["profiles"])


def normalised_key(allowed: set[str], id_type: str, value: str) -> str | None:
    """`type:value` normalised as the stitcher does (so `Bob@X.com ` finds `email:bob@x.com`); None for an
    unknown type. Shared by the routes and the lookup fast path."""
    if id_type not in allowed:
        return None
    if id_type == "email":
        value = normalise_email(value) or value.strip().lower()
    elif id_type == "phone":
        value = normalise_phone(value) or value.strip()
    return f"{id_type}:{value}"


def identifier_key(services: Services, id_type: str, value: str) -> str:
    allowed = services.extra.get("id_types", set())
    key = normalised_key(allowed, id_type, value)
    if key is None:
        raise HTTPException(400, f"id_type: must be one of {', '.join(sorted(allowed))}")
    return key


def _index(services: Services):
    index = services.extra.get("index")
    if index is None:
        raise HTTPException(503, "the serving index is not available in this process")
    return index


@router.get("/v1/lookup/{id_type}/{value}")
def lookup(id_type: str, value: str, request: Request) -> Response:
    services: Services = request.app.state.services
    key = identifier_key(services, id_type, value)
    return Response(orjson.dumps({"audiences": _index(services).audiences(key)}), media_type="application/json")


PROFILE_SQL = """
SELECT profile_id, identifiers, traits, consent, first_seen, last_seen, events, events_by_type,
       events_by_channel, orders, revenue, last_channel, channels
FROM {db}.profiles WHERE profile_id = {p:String}
"""
EVENTS_SQL = """
SELECT message_id, type, event, channel, timestamp, properties
FROM {db}.events_with_profile WHERE profile_id = {p:String}
ORDER BY timestamp DESC LIMIT 50
"""
PROFILE_OF_SQL = "SELECT profile_id FROM {db}.identities WHERE id_type = {t:String} AND id_value = {v:String}"


def _profile(services: Services, key: str) -> dict[str, Any] | None:
    ch = services.ch
    assert ch is not None
    db = ch.database
    id_type, value = key.split(":", 1)
    profile_id: str | None
    if id_type == "profile_id":
        profile_id = value
    else:
        index = services.extra.get("index")
        profile_id = index.profile_of(key) if index is not None else None
        if profile_id is None:
            profile_id = ch.scalar(PROFILE_OF_SQL.replace("{db}", db), {"t": id_type, "v": value})
    if not profile_id:
        return None
    columns, rows = ch.query(PROFILE_SQL.replace("{db}", db), {"p": profile_id})
    if not rows:
        return None
    p = dict(zip(columns, rows[0], strict=True))
    ev_cols, ev_rows = ch.query(EVENTS_SQL.replace("{db}", db), {"p": profile_id})
    events = []
    for r in ev_rows:
        e = dict(zip(ev_cols, r, strict=True))
        e["properties"] = orjson.loads(e["properties"] or "{}")
        events.append(e)
    index = services.extra.get("index")
    return {
        "profile_id": profile_id,
        "identifiers": [{"type": t, "value": v} for t, v in p["identifiers"]],
        "traits": {k: _json_value(v) for k, v in p["traits"].items()},
        "consent": {k: _json_value(v) for k, v in p["consent"].items()},
        "computed": {
            k: p[k]
            for k in (
                "first_seen",
                "last_seen",
                "events",
                "events_by_type",
                "events_by_channel",
                "orders",
                "revenue",
                "last_channel",
                "channels",
            )
        },
        "audiences": index.audiences(f"profile_id:{profile_id}") if index is not None else [],
        "events": events,
    }


def _json_value(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


@router.get("/v1/profiles/{id_type}/{value}")
async def profile(id_type: str, value: str, request: Request) -> Any:
    services: Services = request.app.state.services
    if services.ch is None:
        raise HTTPException(503, "this process has no ClickHouse connection")
    key = identifier_key(services, id_type, value)
    found = await asyncio.to_thread(_profile, services, key)
    if found is None:
        raise HTTPException(404, f"no profile holds {id_type} {value!r}")
    return jsonable_encoder(found)
