"""Liveness, readiness (Kafka and ClickHouse reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ServicesDep

router = APIRouter()


@router.get("/healthz", tags=["ops"])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"])
async def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, bool] = {}
    if services.kafka_ready is not None:
        checks["kafka"] = await asyncio.to_thread(services.kafka_ready)
    if services.ch is not None:
        checks["clickhouse"] = await asyncio.to_thread(services.ch.ping)
    ok = all(checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", tags=["ops"])
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
