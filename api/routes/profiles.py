"""Profile and audience lookups by any identifier.

GET /v1/lookup/{id_type}/{value}   read, analyst or admin token; the low-latency path: the in-memory index.
GET /v1/profiles/{id_type}/{value} read, analyst or admin token; the 360-degree view from ClickHouse: identifiers,
                                   traits, computed fields (revenue per currency, the lifetime value in the base
                                   currency), groups with their own traits, audiences, the latest events.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Depends
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response

from api.auth import reader
from api.deps import ClickHouseDep, IdentifierKey, IndexDep, ServicesDep
from api.errors import ApiError
from schemas.currency import lifetime_value
from schemas.settings import Settings
from sinks.clickhouse import ClickHouse
from sinks.profile_ids import current_profile_id
from sinks.profile_sql import profile_of, read_profile
from streams.serving import MembershipIndex

router = APIRouter(dependencies=[Depends(reader)], tags=["profiles"])


@router.get("/v1/lookup/{id_type}/{value}")
async def lookup(key: IdentifierKey, index: IndexDep) -> Response:
    """Served by api/fastpath.py in a running service; this route documents it and answers where the index is
    missing (503) or the path is unusual."""
    return Response(orjson.dumps({"audiences": index.audiences(key)}), media_type="application/json")


def _groups(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups (accounts, households) the profile's group calls named, each with its own traits."""
    return [{**g, "traits": {k: _json_value(v) for k, v in (g["traits"] or {}).items()}} for g in found]


def _profile(ch: ClickHouse, index: MembershipIndex | None, key: str, settings: Settings) -> dict[str, Any] | None:
    id_type, value = key.split(":", 1)
    profile_id: str | None
    if id_type == "profile_id":  # an id stored before a merge moved the label still finds the profile
        profile_id = current_profile_id(ch, value)
    else:
        profile_id = index.profile_of(key) if index is not None else None
        if profile_id is None:
            profile_id = profile_of(ch, id_type, value)
    if not profile_id:
        return None
    found = read_profile(ch, profile_id)
    if found is None:
        return None
    p = found.row
    events = []
    for e in found.events:
        e["properties"] = orjson.loads(e["properties"] or "{}")
        events.append(e)
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
                "revenue_by_currency",
                "last_channel",
                "channels",
            )
        }
        | {
            "lifetime_value": lifetime_value(
                p["revenue_by_currency"], settings.base_currency, settings.currency_rates
            ).to_dict()
        },
        "groups": _groups(found.groups),
        "audiences": index.audiences(f"profile_id:{profile_id}") if index is not None else [],
        "events": events,
    }


def _json_value(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


@router.get("/v1/profiles/{id_type}/{value}")
async def profile(id_type: str, value: str, key: IdentifierKey, ch: ClickHouseDep, services: ServicesDep) -> Any:
    found = await asyncio.to_thread(_profile, ch, services.index, key, services.settings)
    if found is None:
        raise ApiError(404, f"no profile holds {id_type} {value!r}")
    return jsonable_encoder(found)
