"""Bench payloads from the synthetic generator: Segment events as SDKs send them, as the collector writes them
to the raw topics, and as the stitcher writes them to the stitched topic."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from bench.generator import GeneratorConfig, generate_events, strip_truth
from identity.rules import IdentityRules

SOURCE_NAMES = {"online": "web", "mobile": "app", "offline": "store"}  # cdp's default sources
# The generator's events carry no consent object; the records made here are stamped as by a source that grants
# advertising by default, so the DMP side (which keeps consenting cookies only) does the work it does in production.
BENCH_CONSENT = {"necessary": True, "analytics": True, "personalization": True, "advertising": True}
# The audiences of the console and metrics stages: buyers of the last 30 days (also the size preview), and heavy
# visitors who ordered.
PREVIEW = {
    "name": "preview",
    "scope": "profile",
    "rule": {"event": "Order Completed", "type": "track", "within_days": 30},
}


def sdk_events(
    cfg: GeneratorConfig, persons: range | None = None, channels: tuple[str, ...] = ("online", "mobile")
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(channel, event without ``_truth``) for the generator's events of the given channels.

    Online and mobile events are what SDKs post to /v1/batch; offline ones (till, CRM) carry only e-mail or
    phone and go through `cdp import`."""
    for event in generate_events(cfg, persons):
        clean, truth = strip_truth(event)
        channel = truth["channel"] if truth else "online"
        if channel in channels:
            yield channel, clean


def event_pool(
    seed: int, size: int, first_person: int = 0, channels: tuple[str, ...] = ("online", "mobile")
) -> list[dict[str, Any]]:
    """``size`` SDK events (online and mobile) of people from ``first_person`` on: a load process's payloads."""
    cfg = GeneratorConfig(people=first_person + size + 1, seed=seed)
    events = sdk_events(cfg, range(first_person, first_person + size + 1), channels)
    return [e for _, e in itertools.islice(events, size)]


@lru_cache(maxsize=1)
def _default_rules() -> IdentityRules:
    return IdentityRules.load(None)


def collector_record(
    event: dict[str, Any], channel: str, received_at: datetime | None = None
) -> tuple[bytes | None, bytes, list[tuple[str, str | bytes | None]]]:
    """(key, value, headers) exactly as the collector produces an accepted event: validated, dumped, enriched."""
    from schemas.enrich import enrich
    from schemas.segment import parse_event
    from schemas.validation import offline_invalid_reason
    from streams.keys import raw_event_record

    received = received_at or datetime.now(UTC)
    if channel == "offline":
        if offline_invalid_reason(event) is not None:
            raise ValueError(offline_invalid_reason(event))
        dumped = dict(event)
    else:
        dumped = parse_event(event, None).model_dump(by_alias=True, exclude_none=True, mode="json")
    enriched = enrich(
        dumped,
        received_at=received,
        client_ip="127.0.0.1",
        channel=channel,
        source_id=SOURCE_NAMES[channel],
        consent_default=BENCH_CONSENT,
    )
    _, key, value, headers = raw_event_record("", enriched, _default_rules())
    return key, value, headers


def stitched_record(event: dict[str, Any], channel: str, profile_id: str) -> tuple[bytes, bytes]:
    """(key, value) as the stitcher writes an event to `{prefix}.events.stitched` (what the events sink reads)."""
    from schemas.enrich import enrich

    enriched = enrich(
        event,
        received_at=datetime.now(UTC),
        client_ip="127.0.0.1",
        channel=channel,
        source_id=SOURCE_NAMES[channel],
        consent_default=BENCH_CONSENT,
    )
    enriched["profileId"] = profile_id
    enriched["identityKey"] = f"anonymous_id:{event.get('anonymousId', '')}"
    return enriched["messageId"].encode(), orjson.dumps(enriched)


def heavy_rule() -> dict[str, Any]:
    return {
        "all": [
            {"type": "page", "within_days": 30, "count": {"op": "gte", "value": 3}},
            {"computed": "orders", "op": "gte", "value": 1},
        ]
    }
