"""The web console at /console, and the small JSON endpoints only it needs.

GET /console                         the page (static HTML, CSS and JavaScript shipped in api/console/; no data,
                                     no token: the page asks for one and sends it as a bearer token)
GET /v1/console/session              any token: its role and the pages it may open
GET /v1/console/live                 any token: the latest events per source and the dead letters (streams/live.py)
GET /v1/console/pipeline             any token: events/s per channel, lag per stage, stitching rate, dead letters
GET /v1/console/merges/{profile_id}  any token: the merges a profile took part in

Every other page uses the public API (profiles, audiences, sources, SQL), so what the console shows is what a
client of the API gets. The read token sees no SQL and no write keys; audiences need the analyst or admin token,
as in the API.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from api.auth import Role, reader
from api.deps import ClickHouseDep, FiguresDep, LiveDep, ServicesDep
from sinks.console_reads import merges_of

STATIC = Path(__file__).resolve().parents[1] / "console"
PAGES = {
    Role.ADMIN: ["sources", "live", "profiles", "audiences", "pipeline", "sql"],
    Role.ANALYST: ["sources", "live", "profiles", "audiences", "pipeline", "sql"],
    Role.READ: ["sources", "live", "profiles", "pipeline"],
}
ReaderRole = Annotated[Role, Depends(reader)]
router = APIRouter(tags=["console"])


@router.get("/console", include_in_schema=False)
async def console_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/v1/console/session")
async def session(role: ReaderRole, services: ServicesDep) -> dict[str, Any]:
    return {
        "role": role.value,
        "pages": PAGES[role],
        "source_keys": role == Role.ADMIN,
        "create": role == Role.ADMIN,
        "id_types": sorted(services.id_types),
    }


@router.get("/v1/console/live")
async def live_events(role: ReaderRole, live: LiveDep, source: str | None = None) -> dict[str, Any]:
    """The first call after a quiet while starts the reader and waits (briefly) for the topics' tail."""
    caught_up = await asyncio.to_thread(live.watch)
    rejected = live.rejected(source)
    if role != Role.ADMIN:  # an SDK may put the write key into every event of a batch
        for record in rejected:
            if isinstance(record.get("event"), dict):
                record["event"].pop("writeKey", None)
    return {"caught_up": caught_up, "counts": live.counts(), "events": live.events(source), "rejected": rejected}


@router.get("/v1/console/pipeline", dependencies=[Depends(reader)])
async def pipeline(figures: FiguresDep) -> dict[str, Any]:
    samples = await asyncio.to_thread(figures.sample)
    return {"channels": figures.channels, "stages": [s.name for s in figures.stages], "samples": samples}


@router.get("/v1/console/merges/{profile_id}", dependencies=[Depends(reader)])
def profile_merges(profile_id: str, ch: ClickHouseDep) -> dict[str, Any]:
    return {"merges": merges_of(ch, profile_id)}
