"""Segment HTTP Tracking API: /v1/track, identify, page, screen, group, alias, batch, and the other paths stock
SDKs post the same two shapes to (one event: analytics-next's /v1/t, /v1/i, ...; a batch: /v1/b, /v1/import,
RudderStack's /beacon/v1/batch). The README's SDK compatibility table says which SDK uses which.

Thin, as a collector should be: the intake dependency reads the bounded body and authenticates the write key;
the route validates, enriches, hands to Kafka, and answers 200 only after the broker acknowledged. Invalid batch
items go to the dead-letter topic with their reasons; the valid ones are kept. An event of a suppressed person
(privacy ledger, streams/privacy.py) is answered 200 like any other and dropped; its other identifiers (a new
cookie logging in as them) join the suppression. What is refused is raised and
answered by api/errors.py, so no client input reaches a 5xx.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.auth import write_key_source
from api.deps import Services, events_body, get_services, required_part
from api.errors import EVENT_LOG_REFUSED, NO_COLLECTOR, RETRY_LATER, ApiError
from api.metrics import EVENTS_ACCEPTED, EVENTS_REJECTED, PRODUCE_SECONDS
from api.openapi import WRITE_KEY, json_body
from identity.extract import normalise_identifier_traits
from identity.rules import IdentityRules
from schemas.enrich import client_ip, enrich
from schemas.errors import BatchItemError, EventError
from schemas.segment import EventTooLarge, SegmentEvent, accept_batch, accept_event
from schemas.settings import Settings
from streams.ingest import phones_to_e164
from streams.keys import raw_event_record
from streams.privacy import PrivacyLedger, screened
from streams.producer import CHECKED_HEADER, AsyncProducer, ProduceTimeout
from streams.producer import Record as ProducerRecord
from streams.sources import Source, consent_default

router = APIRouter(tags=["collect"])
SINGLE_TYPES = ("track", "identify", "page", "screen", "group", "alias")
# analytics-next posts one event to /v1/ + the first letter of its type (plugins/segmentio: type.charAt(0)).
SINGLE_PATHS = {t: (f"/v1/{t}", f"/v1/{t[0]}") for t in SINGLE_TYPES}
# A batch: analytics-next (batching) and analytics-kotlin/-swift/-react-native post to /v1/b, the classic
# analytics-android to /v1/import, RudderStack's sendBeacon plugin to /beacon/v1/batch?writeKey=...
BATCH_PATHS = ("/v1/batch", "/v1/b", "/v1/import", "/beacon/v1/batch")
MAX_DEADLETTER_CHARS = 512 * 1024
Record = ProducerRecord  # value None: a tombstone


@dataclass(frozen=True)
class Intake:
    """One collector request, read and authenticated: its payload, its source, what the edge stamps on each
    event (arrival time, client address), and where the records go."""

    payload: dict[str, Any]
    source: Source
    received_at: datetime
    client_ip: str | None
    topic: str
    deadletter_topic: str
    producer: AsyncProducer
    settings: Settings
    rules: IdentityRules
    ledger: PrivacyLedger | None = None

    def record(self, event: dict[str, Any]) -> Record:
        enriched = self.enriched(event)
        return raw_event_record(self.topic, enriched, self.rules)

    def records(self, events: list[dict[str, Any]]) -> list[Record]:
        """The records of these events, less those of suppressed people (counted), plus the ledger records of
        the identifiers that arrived with a suppressed one."""
        ledger = self.ledger
        if ledger is None or not ledger.suppressing_any:
            return [self.record(event) for event in events]
        out: list[Record] = []
        joined: list[Record] = []
        for event in events:
            enriched = self.enriched(event)
            ledger_records = screened(ledger, enriched, self.rules, self.source.channel)
            if ledger_records is None:
                out.append(raw_event_record(self.topic, enriched, self.rules))
            else:
                joined += ledger_records
        return out + joined

    def enriched(self, event: dict[str, Any]) -> dict[str, Any]:
        enriched = enrich(
            event,
            received_at=self.received_at,
            client_ip=self.client_ip,
            channel=self.source.channel,
            source_id=self.source.name,
            consent_default=consent_default(self.source),
        )
        region = self.source.config.get("phone_region")
        if region:  # the source's national phone numbers as E.164; one that cannot be read is left to the stitcher
            phones_to_e164(enriched, region, self.rules)
        normalise_identifier_traits(enriched, self.rules)  # the profile shows traits as the identifiers have them
        return enriched

    def deadletter(self, item: Any, error: BatchItemError) -> Record:
        record = {
            "reason": "; ".join(str(e) for e in error.errors),
            "source": self.source.name,
            "channel": self.source.channel,
            "received_at": self.received_at.isoformat(),
            "event": item,
        }
        return self.deadletter_topic, None, _deadletter_value(record)

    async def produce(self, records: list[Record]) -> None:
        await produce(self.producer, records, self.settings.produce_timeout_s)


def event_records(services: Services, event: dict[str, Any], rules: IdentityRules, channel: str) -> list[Record]:
    """The raw-topic record of one prepared event, or, for a suppressed person, the ledger records of the
    identifiers that arrived with them (the event itself is dropped and counted)."""
    suppressed = screened(services.ledger, event, rules, channel) if services.ledger is not None else None
    if suppressed is not None:
        return suppressed
    return [raw_event_record(services.topics.raw(channel), event, rules)]


async def produce(producer: AsyncProducer, records: list[Record], timeout: float) -> None:
    """Waits for the broker's acknowledgement; a timeout (ProduceTimeout) or a refusal is the client's 503. Shared
    by every route that writes events (the collector's, the webhooks'), which validate them: the records carry
    CHECKED_HEADER, so the stitcher does not validate them again."""
    started = time.perf_counter()
    try:
        await producer.send_many(records, timeout=timeout, headers=[CHECKED_HEADER])
    except ProduceTimeout:
        raise
    except Exception as exc:  # a broker-side refusal: still the client's signal to retry, never a 500
        raise ApiError(503, f"{EVENT_LOG_REFUSED}: {exc}", headers=RETRY_LATER) from exc
    finally:
        PRODUCE_SECONDS.observe(time.perf_counter() - started)


async def intake(request: Request) -> Intake:
    """The one dependency of the collector routes: bounded body, then write-key auth. One dependency rather
    than a tree of them, because FastAPI's resolution costs per node and this is the hot path."""
    services = await get_services(request)
    settings = services.settings
    payload = await events_body(request, settings)
    source = write_key_source(request, payload, required_part(services.sources, NO_COLLECTOR))
    peer = request.client.host if request.client else None
    return Intake(
        payload,
        source,
        datetime.now(UTC),
        client_ip(request.headers, peer, settings.trust_forwarded_for),
        services.topics.raw(source.channel),
        services.topics.deadletter,
        required_part(services.producer, NO_COLLECTOR),
        settings,
        required_part(services.rules, NO_COLLECTOR),
        services.ledger,
    )


IntakeDep = Annotated[Intake, Depends(intake)]


def _deadletter_value(record: dict[str, Any]) -> bytes:
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


@contextmanager
def counted_rejection(reason: str) -> Iterator[None]:
    """Counts a refused event in the metrics before the error handler answers it."""
    try:
        yield
    except EventTooLarge:
        EVENTS_REJECTED.labels("too_large").inc()
        raise
    except EventError:
        EVENTS_REJECTED.labels(reason).inc()
        raise


def _single(event_type: str) -> Callable[[Intake], Awaitable[JSONResponse]]:
    async def endpoint(intake: IntakeDep) -> JSONResponse:
        # The size limit is on what the client sent, not on the enriched event: an event the SDK kept under the
        # limit is not refused because the edge added receivedAt and a parsed user agent.
        with counted_rejection("invalid"):
            event = accept_event(intake.payload, event_type, max_bytes=intake.settings.max_event_bytes)
        records = intake.records([event])
        await intake.produce(records)
        EVENTS_ACCEPTED.labels(intake.source.channel).inc(sum(1 for r in records if r[0] == intake.topic))
        return JSONResponse({"success": True})

    endpoint.__name__ = f"collect_{event_type}"
    return endpoint


for _t, _paths in SINGLE_PATHS.items():
    for _path in _paths:
        router.add_api_route(_path, _single(_t), methods=["POST"], openapi_extra=json_body(SegmentEvent) | WRITE_KEY)


async def collect_batch(intake: IntakeDep) -> JSONResponse:
    with counted_rejection("invalid_batch"):
        good, bad = accept_batch(intake.payload, max_bytes=intake.settings.max_event_bytes)
    items = intake.payload.get("batch") or []
    records = intake.records(good)
    kept = sum(1 for r in records if r[0] == intake.topic)
    records += [intake.deadletter(items[e.index] if e.index < len(items) else None, e) for e in bad]
    await intake.produce(records)
    EVENTS_ACCEPTED.labels(intake.source.channel).inc(kept)
    if bad:
        EVENTS_REJECTED.labels("invalid").inc(len(bad))
    body: dict[str, Any] = {"success": True, "accepted": len(good)}
    if bad:
        body["rejected"] = [e.to_dict() for e in bad]
    return JSONResponse(body)


for _path in BATCH_PATHS:
    router.add_api_route(
        _path, collect_batch, methods=["POST"], openapi_extra=json_body(SegmentEvent, batch=True) | WRITE_KEY
    )
