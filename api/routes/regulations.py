"""Privacy regulations: POST /v1/regulations, GET /v1/regulations (the audit trail) and /v1/regulations/{id}
(admin token).

A request names up to 5,000 identifiers and what to do to the people who hold them (schemas/regulation.py).
Each identifier is normalised as the stitcher keys it; one the rules do not know is a 422 naming its field
(``subjects[3].id_type``), before anything is stored. Accepted, the regulation is answered 202 with its id and
run in the background (sinks/regulations.py); ``dry_run`` answers at once what it would reach, changing nothing.
Neither the answer nor the stored state repeats a subject's value: the state names subjects by keyed hash, and who
asked by the token's role and a keyed hash of the token. The states are the regulations' compacted topic, read
from its beginning by every query API process: a restarted process answers for the regulations before it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api.auth import Role, admin, bearer
from api.deps import ClickHouseDep, JsonBody, ProducerDep, RegulationLogDep, RegulationsDep, Services, ServicesDep
from api.deps import lookup_key as node_key_of
from api.errors import ApiError
from api.openapi import json_body
from identity.extract import Identifier
from schemas.errors import FieldError
from schemas.regulation import RegulationRequest, new_state
from sinks.regulations import Job, dry_run
from streams.follow import wait_until_async

router = APIRouter(tags=["privacy"], dependencies=[Depends(admin)])
VISIBLE_WITHIN_S = 5.0


def subject_keys(services: Services, request: RegulationRequest) -> list[str]:
    """The subjects as node keys, normalised; a 422 naming every subject whose type the rules do not know."""
    keys, wrong = [], []
    for i, subject in enumerate(request.subjects):
        key = node_key_of(services, subject.id_type, subject.value)
        if key is None:
            wrong.append(FieldError(f"subjects[{i}].id_type", f"must be one of {', '.join(sorted(services.id_types))}"))
        else:
            keys.append(key)
    if wrong:
        raise ApiError(422, "; ".join(str(e) for e in wrong[:3]), wrong)
    return keys


def pairs_of(keys: list[str]) -> list[tuple[str, str]]:
    return [(i.id_type, i.value) for i in map(Identifier.from_key, keys)]


@router.post("/v1/regulations", status_code=202, openapi_extra=json_body(RegulationRequest))
async def create_regulation(
    payload: JsonBody,
    http: Request,
    role: Annotated[Role, Depends(admin)],
    services: ServicesDep,
    ch: ClickHouseDep,
    processor: RegulationsDep,
    producer: ProducerDep,
) -> JSONResponse:
    request = RegulationRequest.model_validate(payload)
    keys = subject_keys(services, request)
    if request.dry_run:
        reached = await asyncio.to_thread(dry_run, ch, pairs_of(keys))
        return JSONResponse({"dry_run": True, "type": request.type.value, "subjects": len(keys), **reached})
    regulation_id = f"reg_{secrets.token_hex(8)}"
    hasher = processor.ledger.hasher
    token_id = hasher(f"token:{bearer(http.headers.get('authorization'))}")[:16]
    now = int(time.time() * 1000)
    state = new_state(regulation_id, request.type, hasher.many(keys), role.value, now, token_id, processor.name)
    log = processor.regulations
    await producer.send_many([log.record(state)], services.settings.produce_timeout_s)
    await wait_until_async(lambda: log.get(regulation_id) is not None, VISIBLE_WITHIN_S)
    processor.submit(Job(regulation_id, request.type, pairs_of(keys)))
    body = {"id": regulation_id, "type": request.type.value, "status": state["status"], "subjects": len(keys)}
    return JSONResponse(body, status_code=202)


@router.get("/v1/regulations")
async def list_regulations(
    log: RegulationLogDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, list[dict[str, Any]]]:
    """The audit trail: the latest regulations first, each as GET /v1/regulations/{id} shows it."""
    states = sorted(log.values(), key=lambda s: (s.get("requested_at_ms") or 0, s["id"]), reverse=True)
    return {"regulations": states[:limit]}


@router.get("/v1/regulations/{regulation_id}")
async def get_regulation(regulation_id: str, log: RegulationLogDep) -> dict[str, Any]:
    state = log.get(regulation_id)
    if state is None:
        raise ApiError(404, f"regulation {regulation_id} not found")
    return state
