"""The settings fetches of stock SDKs: Segment's ``/v1/projects/{writeKey}/settings`` and RudderStack's
``/sourceConfig``, answered with this collector as the API host (documents: api/sdk_documents.py).

Served by the collector part, beside the tracking routes, because the SDK that fetches them posts its events to
the same host right after; a write key unknown here gets the error each SDK family expects (404 from Segment's
CDN, 401 "invalid write key" from RudderStack's control plane, which its mobile SDKs read as "stop retrying").
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.auth import basic_user
from api.deps import PublicBaseDep, SourcesDep
from api.errors import INVALID_WRITE_KEY, UNKNOWN_WRITE_KEY, ApiError
from api.sdk_documents import rudderstack_source_config, segment_settings

router = APIRouter(tags=["sdk settings"])
CACHE: dict[str, str] = {"Cache-Control": "max-age=60"}


@router.get("/v1/projects/{write_key}/settings")
async def segment_source_settings(write_key: str, base: PublicBaseDep, sources: SourcesDep) -> JSONResponse:
    """Segment's CDN settings document, for analytics-next (``cdnURL``) and the mobile SDKs (``cdnHost``)."""
    if sources.get(write_key) is None:
        raise ApiError(404, UNKNOWN_WRITE_KEY)
    return JSONResponse(segment_settings(write_key, base), headers=CACHE)


@router.get("/sourceConfig")
@router.get("/sourceConfig/", include_in_schema=False)
async def rudderstack_source_settings(request: Request, base: PublicBaseDep, sources: SourcesDep) -> JSONResponse:
    """RudderStack's source config, for its JavaScript v3 (``configUrl``) and mobile SDKs (``controlPlaneUrl``).

    The write key comes as HTTP Basic (every RudderStack SDK sends it) or as the ``writeKey`` query parameter
    (the JavaScript SDK adds it too); both paths, with and without the slash, are what the SDKs build.
    """
    key = basic_user(request.headers.get("authorization")) or request.query_params.get("writeKey")
    source = sources.get(key) if key else None
    if source is None:
        raise ApiError(401, INVALID_WRITE_KEY)
    document = rudderstack_source_config(source.write_key, source.name, source.created_at_ms, base)
    return JSONResponse(document, headers=CACHE)
