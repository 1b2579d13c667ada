"""What routes need, as typed dependencies (``IndexDep``, ``AudiencesDep``, ...).

The runner builds one :class:`Services` from the parts a process runs and hands it to the app; a route names the
dependencies it needs in its signature, and one a process does not run answers 503 from here, not from the route.
Every dependency is ``async def``: FastAPI runs a plain ``def`` one in its thread pool, a hand-over per request
that the collector's hot path does not need.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Request

from api.body import BodyError, BodyTooLarge, check_content_length, parse_json_body, read_body
from api.errors import (
    NO_ANALYST_SQL,
    NO_AUDIENCES,
    NO_CLICKHOUSE,
    NO_COLLECTOR,
    NO_INDEX,
    NO_LIVE,
    NO_REGULATIONS,
    ApiError,
    unknown_id_type,
)
from api.metrics import EVENTS_REJECTED
from api.sdk_documents import PublicBase, public_base
from identity.normalise import DEFAULT_NORMALISERS, normalised_key
from identity.rules import IdentityRules
from schemas.settings import Settings
from sinks.analyst import AnalystSql
from sinks.clickhouse import ClickHouse
from sinks.regulations import RegulationProcessor
from streams.audiences import AudienceDefinitions
from streams.live import LiveTail
from streams.pipeline_figures import PipelineFigures
from streams.privacy import PrivacyLedger, RegulationLog
from streams.producer import AsyncProducer
from streams.serving import MembershipIndex
from streams.source_status import SourceStats
from streams.sources import SourceRegistry
from streams.topics import Topics

T = TypeVar("T")


@dataclass
class Services:
    """The parts of this process that routes use; None where the process does not run that part."""

    settings: Settings
    topics: Topics
    kafka_ready: Callable[[], bool] | None = None
    producer: AsyncProducer | None = None  # collector and query API
    sources: SourceRegistry | None = None  # collector
    ch: ClickHouse | None = None  # query API
    analyst: AnalystSql | None = None  # query API: POST /v1/sql, guarded, limited clients of their own
    audiences: AudienceDefinitions | None = None  # query API
    index: MembershipIndex | None = None  # query API
    id_types: frozenset[str] = frozenset()  # identifier types a lookup accepts
    rules: IdentityRules | None = None  # collector: keys raw events by their primary identifier
    source_stats: SourceStats | None = None  # collector: webhook deliveries, for the sources' status
    live: LiveTail | None = None  # query API: the console's live events (read while watched)
    figures: PipelineFigures | None = None  # query API: the console's pipeline figures
    ledger: PrivacyLedger | None = None  # collector (suppression) and query API (regulations)
    regulation_log: RegulationLog | None = None  # query API: the regulations' states
    regulations: RegulationProcessor | None = None  # query API: runs the regulations


async def get_services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def required_part(part: T | None, missing: str) -> T:
    """A part this process may not run: the part, or the 503 that says it is not here."""
    if part is None:
        raise ApiError(503, missing)
    return part


def required(pick: Callable[[Services], T | None], missing: str) -> Callable[[Services], Awaitable[T]]:
    """A dependency on a part this process may not run (see :func:`required_part`)."""

    async def dependency(services: ServicesDep) -> T:
        return required_part(pick(services), missing)

    return dependency


ClickHouseDep = Annotated[ClickHouse, Depends(required(lambda s: s.ch, NO_CLICKHOUSE))]
AnalystSqlDep = Annotated[AnalystSql, Depends(required(lambda s: s.analyst, NO_ANALYST_SQL))]
ProducerDep = Annotated[AsyncProducer, Depends(required(lambda s: s.producer, NO_COLLECTOR))]
SourcesDep = Annotated[SourceRegistry, Depends(required(lambda s: s.sources, NO_COLLECTOR))]
AudiencesDep = Annotated[AudienceDefinitions, Depends(required(lambda s: s.audiences, NO_AUDIENCES))]
IndexDep = Annotated[MembershipIndex, Depends(required(lambda s: s.index, NO_INDEX))]
LiveDep = Annotated[LiveTail, Depends(required(lambda s: s.live, NO_LIVE))]
RegulationsDep = Annotated[RegulationProcessor, Depends(required(lambda s: s.regulations, NO_REGULATIONS))]
RegulationLogDep = Annotated[RegulationLog, Depends(required(lambda s: s.regulation_log, NO_REGULATIONS))]
FiguresDep = Annotated[PipelineFigures, Depends(required(lambda s: s.figures, NO_LIVE))]


async def request_base(request: Request, settings: SettingsDep) -> PublicBase:
    """Where SDKs reach this collector (api/sdk_documents.py :func:`public_base`), for this request: 400 for a
    Host header that is not a host name."""
    trusted = settings.trust_forwarded_for
    try:
        return public_base(
            settings.public_url,
            request.url.scheme,
            request.headers.get("host"),
            request.headers.get("x-forwarded-proto") if trusted else None,
            request.headers.get("x-forwarded-host") if trusted else None,
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


PublicBaseDep = Annotated[PublicBase, Depends(request_base)]


def lookup_key(services: Services, id_type: str, value: str) -> str | None:
    """An identifier given to a lookup as the stitcher keys it, normalised by this process's identity rules
    (`email:bob@x.com`, a lower-cased advertising id); None for a type a lookup does not accept. The route and
    the lookup fast path (api/fastpath.py) both ask here, so they never disagree."""
    rules = services.rules
    if rules is None:
        return normalised_key(services.id_types, id_type, value, DEFAULT_NORMALISERS)
    return normalised_key(services.id_types, id_type, value, rules.normalisers, rules.default_phone_region)


async def identifier_key(id_type: str, value: str, services: ServicesDep) -> str:
    """The path's identifier as the stitcher keys it (`email:bob@x.com`); 400 for a type the rules do not know."""
    key = lookup_key(services, id_type, value)
    if key is None:
        raise unknown_id_type(services.id_types)
    return key


IdentifierKey = Annotated[str, Depends(identifier_key)]


async def json_body(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """The body as a JSON object, read within ``CDP_MAX_REQUEST_BYTES`` (also after gzip) whatever its
    Content-Type: curl sends form encoding, ``navigator.sendBeacon`` text/plain."""
    limit = settings.max_request_bytes
    check_content_length(request.headers.get("content-length"), limit)
    raw = await read_body(request.stream(), request.headers.get("content-encoding"), limit)
    return parse_json_body(raw)


JsonBody = Annotated[dict[str, Any], Depends(json_body)]


async def events_body(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """:func:`json_body` for the collector, counting what it refuses in the rejected-events metric."""
    try:
        return await json_body(request, settings)
    except BodyError as exc:
        EVENTS_REJECTED.labels("too_large" if isinstance(exc, BodyTooLarge) else "bad_body").inc()
        raise
