"""Who may call what, read from the app's own route table: the analyst token is refused on every admin endpoint.

Every route of the app is found and classified by the role dependency it carries, so an endpoint added later
is covered without editing this file; a route that carries none must be one of the public ones listed here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.app import create_app
from api.auth import Requires, Role
from api.deps import Services
from api.routes.collect import BATCH_PATHS, SINGLE_PATHS
from schemas.settings import Settings
from streams.topics import topics_for

TOKENS = {Role.ADMIN: "t-admin", Role.ANALYST: "t-analyst", Role.READ: "t-read"}
PUBLIC = {"/healthz", "/readyz", "/metrics", "/v1/track", "/v1/identify", "/v1/page", "/v1/screen"}
PUBLIC |= {"/v1/group", "/v1/alias", "/v1/batch"}  # write-key auth (collector)
PUBLIC |= {path for paths in SINGLE_PATHS.values() for path in paths} | set(BATCH_PATHS)  # the SDKs' own paths
PUBLIC |= {"/v1/projects/{write_key}/settings", "/sourceConfig", "/sourceConfig/"}  # SDK settings, by write key
PUBLIC |= {"/v1/webhooks/{name}"}  # the sender's signature over the body, with the source's secret
PUBLIC |= {"/console"}  # the console's static page: no data; it asks for a token and sends it on every call
ADMIN_ONLY_AT_LEAST = {("POST", "/v1/audiences"), ("DELETE", "/v1/audiences/{audience_id}"), ("POST", "/v1/sources")}
ADMIN_ONLY_AT_LEAST |= {("PUT", "/v1/audiences/{audience_id}")}
ANALYST_MAY = {("POST", "/v1/sql"), ("GET", "/v1/audiences"), ("GET", "/v1/profiles/{id_type}/{value}")}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    settings = Settings(
        data_dir=Path(tmp_path_factory.mktemp("roles")),
        admin_token=TOKENS[Role.ADMIN],
        analyst_token=TOKENS[Role.ANALYST],
        read_token=TOKENS[Role.READ],
    )
    return create_app(Services(settings=settings, topics=topics_for(settings)))


def endpoints(app: FastAPI) -> Iterator[tuple[str, str, frozenset[Role] | None]]:
    """(method, path, roles) of every route; roles None when the route takes no bearer token."""
    for route in _api_routes(app):
        found = [d.call.roles for d in _dependencies(route.dependant) if isinstance(d.call, Requires)]
        for method in sorted((route.methods or set()) - {"HEAD"}):
            yield method, route.path, found[0] if found else None


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """The app's routes with their effective dependencies (router-level ones included). FastAPI 0.16x keeps
    included routers as branches of the table and lists their routes through `iter_route_contexts`; older
    versions hold them flat in `app.routes`."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    yield from (c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute))


def _dependencies(dependant: Any) -> Iterator[Any]:
    for d in dependant.dependencies:
        yield d
        yield from _dependencies(d)


def call(app: FastAPI, method: str, path: str, token: str | None) -> httpx.Response:
    url = re.sub(r"\{[^}]+\}", "x", path)
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cdp") as client:
            return await client.request(method, url, headers=headers, json={"query": "SELECT 1"})

    return asyncio.run(go())


def test_every_route_is_public_or_takes_a_role(app: FastAPI) -> None:
    untokened = {path for _, path, roles in endpoints(app) if roles is None}
    assert untokened <= PUBLIC, f"routes without a role dependency: {untokened - PUBLIC}"


def test_the_analyst_token_is_refused_on_every_admin_endpoint(app: FastAPI) -> None:
    admin_only = {(m, p) for m, p, roles in endpoints(app) if roles is not None and Role.ANALYST not in roles}
    assert admin_only >= ADMIN_ONLY_AT_LEAST
    for method, path in sorted(admin_only):
        r = call(app, method, path, TOKENS[Role.ANALYST])
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert "analyst token" in r.json()["error"]
        # the admin token passes the same check (whatever the handler then answers without a backend)
        assert call(app, method, path, TOKENS[Role.ADMIN]).status_code not in (401, 403), (method, path)


def test_the_analyst_token_runs_sql_and_reads_profiles_and_audiences(app: FastAPI) -> None:
    allowed = {(m, p) for m, p, roles in endpoints(app) if roles is not None and Role.ANALYST in roles}
    assert allowed >= ANALYST_MAY
    for method, path in sorted(allowed):
        assert call(app, method, path, TOKENS[Role.ANALYST]).status_code not in (401, 403), (method, path)


def test_the_read_token_may_not_run_sql(app: FastAPI) -> None:
    assert call(app, "POST", "/v1/sql", TOKENS[Role.READ]).status_code == 403
    assert call(app, "GET", "/v1/audiences", TOKENS[Role.READ]).status_code == 403
    assert call(app, "GET", "/v1/profiles/{id_type}/{value}", TOKENS[Role.READ]).status_code not in (401, 403)


def test_no_token_or_an_unknown_one_is_401_everywhere(app: FastAPI) -> None:
    for method, path, roles in endpoints(app):
        if roles is None:
            continue
        assert call(app, method, path, None).status_code == 401, (method, path)
        r = call(app, method, path, "t-nobody")
        assert r.status_code == 401, (method, path)
        assert r.json()["error"] == "unknown bearer token"
