"""POST /v1/consent (admin token): consent for an identifier that sends no events itself (a CRM contact, a
signed paper form, a call-centre opt-out).

The choice becomes an event (``Segment Consent Preference Updated`` on the offline channel, carrying
``context.consent.categoryPreferences``) and goes the way of every event: validated, screened by the privacy
ledger, written to the raw topic, stitched. So it is ordered with the person's other choices, joins their profile,
is replayed with the log and erased with the person. Answered 202 with the event's messageId once the broker has it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictBool

from api.auth import admin
from api.deps import JsonBody, ProducerDep, ServicesDep, required_part
from api.errors import NO_COLLECTOR, ApiError
from api.routes.collect import event_records, produce
from streams.ingest import prepare
from streams.sources import Source

router = APIRouter(tags=["privacy"], dependencies=[Depends(admin)])
CONSENT_EVENT = "Segment Consent Preference Updated"
CONSENT_SOURCE = Source(write_key="", name="consent-api", channel="offline", created_at_ms=0, kind="api")
# Where each identifier type goes in the event; any other type the identity rules know goes in context.traits.
_TOP_LEVEL = {"user_id": "userId", "anonymous_id": "anonymousId"}
_NOT_SETTABLE = frozenset({"profile_id", "device_id"})


class ConsentRequest(BaseModel):
    id_type: str = Field(min_length=1)
    value: str = Field(min_length=1)
    categories: dict[str, StrictBool]


def consent_event(request: ConsentRequest) -> dict[str, Any]:
    """The event that records ``request``: the identifier where the stitcher reads that type."""
    context: dict[str, Any] = {"consent": {"categoryPreferences": dict(request.categories)}}
    event: dict[str, Any] = {"type": "track", "event": CONSENT_EVENT, "messageId": str(uuid.uuid4())}
    top = _TOP_LEVEL.get(request.id_type)
    if top is not None:
        event[top] = request.value
    else:
        context["traits"] = {request.id_type: request.value}
    event["context"] = context
    return event


@router.post("/v1/consent", status_code=202)
async def set_consent(payload: JsonBody, services: ServicesDep, producer: ProducerDep) -> JSONResponse:
    request = ConsentRequest.model_validate(payload)
    if request.id_type in _NOT_SETTABLE or request.id_type not in services.id_types:
        known = sorted(services.id_types - _NOT_SETTABLE)
        raise ApiError(422, f"id_type: one of {', '.join(known)}")
    rules = required_part(services.rules, NO_COLLECTOR)
    event, reason = prepare(consent_event(request), CONSENT_SOURCE, datetime.now(UTC), rules)
    if event is None:
        raise ApiError(422, reason or "not a valid consent")
    await produce(
        producer, event_records(services, event, rules, CONSENT_SOURCE.channel), services.settings.produce_timeout_s
    )
    return JSONResponse({"message_id": event["messageId"]}, status_code=202)
