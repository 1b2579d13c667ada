"""Sources over HTTP, for the console: GET /v1/sources (any token; write keys and snippets for the admin token
only) and POST /v1/sources (admin token) creating an SDK source with its write key.

Pull sources (database, webhook, folder) need files and checks on the machine that runs them and stay with
`cdp sources create`; they are listed here like every source.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.auth import Role, admin, reader
from api.deps import JsonBody, ProducerDep, PublicBaseDep, ServicesDep, SourcesDep
from api.errors import ApiError
from api.sdk_documents import PublicBase
from api.snippets import SCRIPT_PATH, SEGMENT_CDN, analytics_js_snippet
from schemas.consent import DEFAULT_CONSENT, validate_default
from schemas.settings import CHANNELS
from streams.follow import wait_until_async
from streams.sources import Source, consent_default, new_source, source_record

router = APIRouter(tags=["sources"])
READ_BACK_S = 5.0


class SourceCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    channel: str
    consent_default: dict[str, Any] | None = None  # events without a consent object: schemas/consent.py


def _view(source: Source, base: PublicBase, keys: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": source.name,
        "channel": source.channel,
        "kind": source.kind,
        "created_at_ms": source.created_at_ms,
        "consent_default": consent_default(source) or dict(DEFAULT_CONSENT),
    }
    if keys:
        view["write_key"] = source.write_key
        if source.kind == "sdk":
            view["snippet"] = analytics_js_snippet(source.write_key, base)
            view["script_path"] = SCRIPT_PATH.format(write_key=source.write_key)
            view["script_cdn"] = SEGMENT_CDN + view["script_path"]
    return view


@router.get("/v1/sources")
async def list_sources(
    role: Annotated[Role, Depends(reader)], sources: SourcesDep, base: PublicBaseDep
) -> dict[str, Any]:
    return {"sources": [_view(s, base, role == Role.ADMIN) for s in sources.all()]}


@router.post("/v1/sources", status_code=201, dependencies=[Depends(admin)])
async def create_source(
    payload: JsonBody, sources: SourcesDep, producer: ProducerDep, services: ServicesDep, base: PublicBaseDep
) -> JSONResponse:
    """An SDK source on a channel; answered once this process's registry has read it back, so its write key
    is accepted by the collector from the answer on."""
    spec = SourceCreate.model_validate(payload)
    if spec.channel not in CHANNELS:
        raise ApiError(422, f"channel: must be one of {', '.join(CHANNELS)}")
    config: dict[str, Any] = {}
    if spec.consent_default is not None:
        try:
            config["consent_default"] = validate_default(spec.consent_default, "consent_default")
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
    try:
        source = new_source(spec.name, spec.channel, config=config)
    except ValueError as exc:
        raise ApiError(422, f"name: {exc}") from None
    await producer.send_many([source_record(services.topics.sources, source)], services.settings.produce_timeout_s)
    if not await wait_until_async(lambda: sources.get(source.write_key) is not None, READ_BACK_S):
        raise ApiError(503, "the source was written but not read back in time; list the sources again")
    return JSONResponse(_view(source, base, True), status_code=201)
