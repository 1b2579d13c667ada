"""The offline path's phone numbers: national ones read in the import's or the source's region, or refused."""

from __future__ import annotations

from datetime import UTC, datetime

from identity.rules import IdentityRules
from schemas.offline import receipt_event
from streams.ingest import prepare
from streams.sources import Source

RULES = IdentityRules.load(None)
NOW = datetime(2026, 5, 1, tzinfo=UTC)


def _source(**config: str) -> Source:
    return Source("wk_x", "tills", "offline", 0, config=dict(config))


def _receipt(phone: str) -> dict:
    return receipt_event({"receipt_id": "R1", "phone": phone, "total": "3"})


def test_a_national_phone_is_read_in_the_source_or_import_region() -> None:
    event, reason = prepare(_receipt("06 12 34 56 78"), _source(phone_region="FR"), NOW, RULES)
    assert reason is None and event is not None
    assert event["context"]["traits"]["phone"] == "+33612345678"
    event, _ = prepare(_receipt("020 7946 0958"), _source(phone_region="FR"), NOW, RULES, phone_region="GB")
    assert event is not None and event["context"]["traits"]["phone"] == "+442079460958"  # the import's region wins


def test_a_phone_that_cannot_be_read_rejects_the_row_with_a_reason() -> None:
    event, reason = prepare(_receipt("06 12 34 56 78"), _source(), NOW, RULES)  # the rules' region: US
    assert event is None
    assert reason is not None and reason.startswith("context.traits.phone: '06 12 34 56 78'") and "US" in reason
    event, reason = prepare(_receipt("n/a"), _source(), NOW, RULES)  # a placeholder is the blocklist's business
    assert reason is None and event is not None


def test_imported_traits_that_are_identifiers_are_normalised_placeholders_left_alone() -> None:
    row = {"type": "identify", "userId": "u1", "traits": {"email": " Ann@Example.COM", "phone": "null"}}
    event, reason = prepare(row, _source(), NOW, RULES)
    assert reason is None and event is not None
    assert event["traits"] == {"email": "ann@example.com", "phone": "null"}
