"""Segment HTTP Tracking API: /v1/track, identify, page, screen, group, alias, batch.

Thin, as a collector should be: authenticate, bound and parse the body, validate, enrich, hand to Kafka, and
answer 200 only after the broker acknowledged. Invalid batch items go to the dead-letter topic with their
reasons; the valid ones are kept. No client input reaches a 5xx.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.auth import basic_user
from api.body import BodyError, BodyTooLarge, parse_json_body, read_body
from api.deps import Services
from api.enrich import client_ip, enrich
from api.metrics import EVENTS_ACCEPTED, EVENTS_REJECTED, PRODUCE_SECONDS
from schemas.errors import EventError
from schemas.segment import EventTooLarge, accept_batch, accept_event
from streams.producer import CHECKED_HEADER, ProduceTimeout

router = APIRouter()
SINGLE_TYPES = ("track", "identify", "page", "screen", "group", "alias")
MAX_DEADLETTER_CHARS = 512 * 1024


def _error(
    status: int, message: str, errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"success": False, "error": message}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


def _field_errors(exc: EventError, prefix: str = "") -> list[dict[str, str]]:
    return [{"loc": f"{prefix}{e.loc}", "msg": e.msg} for e in exc.errors]


def _deadletter_record(record: dict[str, Any]) -> bytes:
    """Encode a dead-letter record. An item nested too deeply for orjson is kept as stdlib JSON text, and one that
    not even that can encode is recorded without its body (the reason still says why it was refused)."""
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError:
        pass
    try:
        text = json.dumps(record["event"], ensure_ascii=False)[:MAX_DEADLETTER_CHARS]
    except (RecursionError, ValueError, TypeError):
        text = None
    return orjson.dumps({**record, "event": None, "event_json": text})


def partition_key(event: dict[str, Any]) -> bytes | None:
    """One person's events keep their order where the SDK gives a stable id."""
    key = event.get("anonymousId") or event.get("userId") or event.get("previousId")
    return str(key).encode() if key else None


async def _read_payload(request: Request, services: Services) -> dict[str, Any] | JSONResponse:
    limit = services.settings.max_request_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        return _error(413, f"request body exceeds {limit} bytes")
    try:
        raw = await read_body(request.stream(), request.headers.get("content-encoding"), limit)
        return parse_json_body(raw)
    except BodyError as exc:
        EVENTS_REJECTED.labels("too_large" if isinstance(exc, BodyTooLarge) else "bad_body").inc()
        return _error(exc.status_code, str(exc))


def _source(request: Request, services: Services, payload: dict[str, Any]):
    key = basic_user(request.headers.get("authorization")) or payload.get("writeKey")
    if not isinstance(key, str) or not key:
        return None, _error(401, "missing write key (HTTP Basic user name or writeKey in the body)")
    assert services.sources is not None
    source = services.sources.get(key)
    if source is None:
        return None, _error(401, "unknown write key")
    return source, None


async def _produce(services: Services, records: list[tuple[str, bytes | None, bytes]]) -> JSONResponse | None:
    assert services.producer is not None
    started = time.perf_counter()
    try:
        await services.producer.send_many(
            records, timeout=services.settings.produce_timeout_s, headers=[CHECKED_HEADER]
        )
    except ProduceTimeout:
        return _error(503, "event log unavailable, retry later", headers={"Retry-After": "5"})
    except Exception as exc:  # a broker-side refusal: still the client's signal to retry, never a 500
        return _error(503, f"event log refused the write: {exc}", headers={"Retry-After": "5"})
    finally:
        PRODUCE_SECONDS.observe(time.perf_counter() - started)
    return None


async def collect(request: Request, forced_type: str | None) -> JSONResponse:
    services: Services = request.app.state.services
    payload = await _read_payload(request, services)
    if isinstance(payload, JSONResponse):
        return payload
    source, failure = _source(request, services, payload)
    if failure is not None:
        return failure
    received = datetime.now(UTC)
    ip = client_ip(
        request.headers, request.client.host if request.client else None, services.settings.trust_forwarded_for
    )
    topic = services.topics.raw(source.channel)

    def prepare(event: dict[str, Any]) -> dict[str, Any]:
        return enrich(
            event,
            received_at=received,
            client_ip=ip,
            channel=source.channel,
            source_id=source.name,
        )

    if forced_type is not None:
        try:
            event = prepare(accept_event(payload, forced_type, max_bytes=services.settings.max_event_bytes))
        except EventTooLarge as exc:
            # Measured on what the client sent, not on the enriched event: an event the SDK kept under the
            # limit is not refused because we added receivedAt and a parsed user agent.
            EVENTS_REJECTED.labels("too_large").inc()
            return _error(413, f"event exceeds {services.settings.max_event_bytes} bytes", _field_errors(exc))
        except EventError as exc:
            EVENTS_REJECTED.labels("invalid").inc()
            return _error(400, "invalid event", _field_errors(exc))
        value = orjson.dumps(event)
        failure = await _produce(services, [(topic, partition_key(event), value)])
        if failure is not None:
            return failure
        EVENTS_ACCEPTED.labels(source.channel).inc()
        return JSONResponse({"success": True})

    try:
        good, bad = accept_batch(payload, max_bytes=services.settings.max_event_bytes)
    except EventError as exc:
        EVENTS_REJECTED.labels("invalid_batch").inc()
        return _error(400, "invalid batch", _field_errors(exc))
    records: list[tuple[str, bytes | None, bytes]] = []
    for valid in good:
        event = prepare(valid)
        records.append((topic, partition_key(event), orjson.dumps(event)))
    rejected = []
    items = payload.get("batch") or []
    for item_error in bad:
        errors = [{"loc": e.loc, "msg": e.msg} for e in item_error.errors]
        rejected.append({"index": item_error.index, "errors": errors})
        original = items[item_error.index] if item_error.index < len(items) else None
        records.append(
            (
                services.topics.deadletter,
                None,
                _deadletter_record(
                    {
                        "reason": "; ".join(f"{e['loc']}: {e['msg']}" for e in errors),
                        "source": source.name,
                        "channel": source.channel,
                        "received_at": received.isoformat(),
                        "event": original,
                    }
                ),
            )
        )
    failure = await _produce(services, records)
    if failure is not None:
        return failure
    EVENTS_ACCEPTED.labels(source.channel).inc(len(good))
    if bad:
        EVENTS_REJECTED.labels("invalid").inc(len(bad))
    body: dict[str, Any] = {"success": True, "accepted": len(good)}
    if rejected:
        body["rejected"] = rejected
    return JSONResponse(body)


def _single(event_type: str):
    async def endpoint(request: Request) -> JSONResponse:
        return await collect(request, event_type)

    endpoint.__name__ = f"collect_{event_type}"
    return endpoint


for _t in SINGLE_TYPES:
    router.add_api_route(f"/v1/{_t}", _single(_t), methods=["POST"], tags=["collect"])


@router.post("/v1/batch", tags=["collect"])
async def collect_batch(request: Request) -> JSONResponse:
    return await collect(request, None)
