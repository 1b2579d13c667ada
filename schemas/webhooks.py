"""Webhook payloads -> Segment events, through a webhook mapping (pure).

A webhook mapping file (YAML; `schemas/mappings/stripe.yaml` and `shopify.yaml` shipped) says:

``signature``: how the sender signs (``stripe`` or ``shopify``, checked by `api/signatures.py`);
``delivery_id`` and ``event_type``: where the delivery's id and its event type are, ``body PATH`` or
``header NAME``. Senders retry a delivery with the same id until they get a 2xx, so the messageId is derived
from the source and the delivery id: a replayed delivery is stored once.
``events``: event type (a name, or a shell-style pattern such as ``customer.*``; the first match wins) -> an
event mapping in the grammar of `schemas/mapping.py`, plus ``unset_traits: true`` for deletions (the traits
become null, the identifiers stay, as with a deleted database row). Types that no entry names are
acknowledged and ignored: senders send what the endpoint subscribed to, and a 4xx would only make them retry.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from schemas.mapping import EventMapping, MappingError, load_yaml

SignatureScheme = Literal["stripe", "shopify"]
SIGNATURES: tuple[SignatureScheme, ...] = ("stripe", "shopify")


@dataclass(frozen=True, slots=True)
class Locator:
    """Where a value is: in the JSON body at a dotted path, or in a request header."""

    place: Literal["body", "header"]
    name: str

    @classmethod
    def parse(cls, text: Any, where: str) -> Locator:
        words = str(text or "").split()
        if len(words) != 2 or words[0] not in ("body", "header"):
            raise MappingError(f"{where}: expected 'body PATH' or 'header NAME', got {text!r}")
        return cls("body" if words[0] == "body" else "header", words[1])

    def find(self, headers: Mapping[str, str], payload: Mapping[str, Any]) -> str | None:
        if self.place == "header":
            wanted = self.name.lower()
            value: Any = next((v for k, v in headers.items() if k.lower() == wanted), None)
        else:
            value = payload
            for part in self.name.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
        if value is None or isinstance(value, bool | dict | list):
            return None
        text = str(value).strip()
        return text or None


@dataclass(frozen=True, slots=True)
class WebhookRule:
    pattern: str
    event: EventMapping
    unset_traits: bool


@dataclass(frozen=True, slots=True)
class WebhookMapping:
    description: str
    signature: SignatureScheme
    delivery_id: Locator
    event_type: Locator
    rules: tuple[WebhookRule, ...]

    @classmethod
    def parse(cls, spec: Any) -> WebhookMapping:
        if not isinstance(spec, Mapping):
            raise MappingError("mapping: must be a YAML object")
        signature = spec.get("signature")
        if signature not in SIGNATURES:
            raise MappingError(f"signature: must be one of {', '.join(SIGNATURES)}")
        events = spec.get("events")
        if not isinstance(events, Mapping) or not events:
            raise MappingError("events: must map event types to event mappings")
        rules = []
        for pattern, rule in events.items():
            if not isinstance(rule, Mapping):
                raise MappingError(f"events.{pattern}: must be an event mapping")
            rules.append(
                WebhookRule(
                    str(pattern), EventMapping.parse(rule, f"events.{pattern}."), bool(rule.get("unset_traits"))
                )
            )
        return cls(
            str(spec.get("description", "")).strip(),
            signature,
            Locator.parse(spec.get("delivery_id"), "delivery_id"),
            Locator.parse(spec.get("event_type"), "event_type"),
            tuple(rules),
        )

    @classmethod
    def from_yaml(cls, text: str) -> WebhookMapping:
        return cls.parse(load_yaml(text))

    def rule_for(self, event_type: str) -> WebhookRule | None:
        return next((r for r in self.rules if fnmatch.fnmatchcase(event_type, r.pattern)), None)


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str
    event_type: str
    event: dict[str, Any] | None  # None: a type the mapping does not map (acknowledged, stored nowhere)


def delivery_event(mapping: WebhookMapping, source: str, headers: Mapping[str, str], payload: Any) -> Delivery:
    """The Segment event of one verified delivery. MappingError (the sender's 4xx) names what is missing."""
    if not isinstance(payload, Mapping):
        raise MappingError("body: not a JSON object")
    delivery_id = mapping.delivery_id.find(headers, payload)
    if delivery_id is None:
        raise MappingError(f"{mapping.delivery_id.place} {mapping.delivery_id.name}: the delivery id is missing")
    event_type = mapping.event_type.find(headers, payload)
    if event_type is None:
        raise MappingError(f"{mapping.event_type.place} {mapping.event_type.name}: the event type is missing")
    rule = mapping.rule_for(event_type)
    if rule is None:
        return Delivery(delivery_id, event_type, None)
    event = rule.event.build(payload, unset_traits=rule.unset_traits)
    digest = hashlib.sha256(f"{source}\x1f{delivery_id}".encode()).hexdigest()[:32]
    event["messageId"] = f"webhook-{digest}"
    event.setdefault("context", {})["webhook"] = {"type": event_type, "delivery_id": delivery_id}
    return Delivery(delivery_id, event_type, event)
