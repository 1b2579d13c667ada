"""Builds the FastAPI app from the parts a process runs (collector, query API, or both)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from api import errors, openapi
from api.deps import Services
from api.routes import (
    audiences,
    collect,
    consent,
    console,
    health,
    profiles,
    query,
    regulations,
    sdk_settings,
    sources,
    webhooks,
)


def create_app(services: Services, *, collector: bool = True, query_api: bool = True) -> FastAPI:
    app = FastAPI(title="cdp", version="0.1.0")
    app.state.services = services
    origins = [o.strip() for o in services.settings.cors_origins.split(",") if o.strip()]
    # Browser SDKs send the write key in the body or as Basic auth, not as cookies: no credentials, so a
    # wildcard origin is allowed (a wildcard cannot be combined with credentials).
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["*"],
        max_age=86400,
    )
    errors.install(app)
    openapi.install(app)
    app.include_router(health.router)
    if collector:
        app.include_router(collect.router)
        app.include_router(sdk_settings.router)
        app.include_router(webhooks.router)
    if query_api:
        app.include_router(query.router)
        app.include_router(profiles.router)
        app.include_router(audiences.router)
        app.include_router(regulations.router)
        app.include_router(consent.router)
        app.include_router(sources.router)
        app.include_router(console.router)
        app.mount("/console/static", StaticFiles(directory=console.STATIC), name="console-static")
    return app
