"""POST /v1/webhooks/{source}: deliveries from SaaS tools (payments, shops) for sources of kind webhook.

The answers, in the order they are decided (README "Webhooks"); errors in the one error body of api/errors.py:

* 404 no webhook source of that name;
* 413 body over the request limit;
* 401 signature missing or wrong, or (Stripe) its timestamp outside the tolerance: nothing is stored;
* 400 body not a JSON object, or the mapping's delivery id or event type missing: nothing is stored;
* 200 ``{"success": true}`` stored: the delivery id gives the messageId, so a replayed or retried delivery
  is answered 200 again and stored once;
* 200 ``{"success": true, "ignored": TYPE}`` a type the mapping does not map (senders send what the endpoint
  subscribed to; a 4xx would only make them retry);
* 200 ``{"success": true, "deadletter": REASON}`` a verified delivery whose event is not valid (a customer
  without any identifier): it goes to the dead-letter topic with the reason, since the sender cannot fix it;
* 503 the event log is unavailable: the sender retries later.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.body import check_content_length, read_body
from api.deps import ProducerDep, ServicesDep, SourcesDep, required_part
from api.errors import NO_COLLECTOR, ApiError
from api.routes.collect import event_records, produce
from api.signatures import SignatureError, verify
from schemas.mapping import MappingError
from schemas.webhooks import WebhookMapping, delivery_event
from streams.ingest import deadletter_record, prepare

router = APIRouter(tags=["webhooks"])


@lru_cache(maxsize=64)
def _mapping(text: str) -> WebhookMapping:
    return WebhookMapping.from_yaml(text)


@router.post("/v1/webhooks/{name}")
async def receive(
    name: str, request: Request, services: ServicesDep, sources: SourcesDep, producer: ProducerDep
) -> JSONResponse:
    source = sources.named(name, "webhook")
    if source is None:
        raise ApiError(404, f"no webhook source named {name!r}")
    settings, stats = services.settings, services.source_stats
    check_content_length(request.headers.get("content-length"), settings.max_request_bytes)
    # Not decompressed: the signature covers the bytes as sent, and senders do not compress webhooks.
    raw = await read_body(request.stream(), None, settings.max_request_bytes)
    mapping = _mapping(source.config["mapping_yaml"])
    try:
        verify(
            mapping.signature,
            source.config.get("secret", ""),
            request.headers,
            raw,
            time.time(),
            settings.webhook_tolerance_s,
        )
    except SignatureError as exc:
        if stats is not None:
            stats.error(source.name, "webhook", f"refused a delivery: {exc}")
        raise ApiError(401, f"invalid signature: {exc}") from None
    try:
        delivery = delivery_event(mapping, source.name, request.headers, orjson.loads(raw))
    except orjson.JSONDecodeError:
        raise ApiError(400, "body: not valid JSON") from None
    except MappingError as exc:
        raise ApiError(400, str(exc)) from None
    if delivery.event is None:
        return JSONResponse({"success": True, "ignored": delivery.event_type})
    received = datetime.now(UTC)
    rules = required_part(services.rules, NO_COLLECTOR)
    event, reason = prepare(delivery.event, source, received, rules)
    if event is None:
        record = deadletter_record(services.topics.deadletter, source, reason or "", delivery.event, received)
        await produce(producer, [record], settings.produce_timeout_s)
        if stats is not None:
            stats.error(source.name, "webhook", f"{delivery.event_type} {delivery.delivery_id}: {reason}")
        return JSONResponse({"success": True, "deadletter": reason})
    # a suppressed person's event is dropped (200, counted), its new identifiers join
    await produce(producer, event_records(services, event, rules, source.channel), settings.produce_timeout_s)
    if stats is not None:
        stats.rows(source.name, "webhook", 1)
        stats.state(source.name, "webhook", "running")
    return JSONResponse({"success": True})
