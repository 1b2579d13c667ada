"""A stored profile id keeps working after a merge moved the label: it answers the current profile, with its id."""

from __future__ import annotations

from datetime import UTC, datetime

from sinks.clickhouse import ClickHouse
from sinks.rows import IDENTITY_COLUMNS, MERGE_COLUMNS, identity_row, merge_row
from tests.api.routes.fixtures import READ, client, services
from tests.sinks.fixtures import ANN, account_world


def test_an_old_profile_id_answers_the_current_profile(ch: ClickHouse) -> None:
    ms = int(datetime.now(UTC).timestamp() * 1000)
    held = {"id_type": "email", "id_value": "ann@example.com", "profile_id": "p3", "first_seen_ms": ms}
    ch.insert("identities_store", [identity_row({**held, "updated_ms": ms, "version": 1})], IDENTITY_COLUMNS)
    merges = [("p1", "p2"), ("p2", "p1"), ("p2", "p3")]  # one pair recorded both ways, then a later merge
    rows = [merge_row({"from_profile": a, "into_profile": b, "ts_ms": ms}) for a, b in merges]
    ch.insert("merges_store", rows, MERGE_COLUMNS)
    http = client(services(ch=ch))
    for stored in ("p1", "p2", "p3"):
        r = http.get(f"/v1/profiles/profile_id/{stored}", headers=READ)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["profile_id"] == "p3"
        assert body["identifiers"] == [{"type": "email", "value": "ann@example.com"}]
    assert http.get("/v1/profiles/profile_id/p-never", headers=READ).status_code == 404


def test_the_profile_shows_its_groups_and_a_lifetime_value_in_the_base_currency(ch: ClickHouse) -> None:
    account_world(ch)
    s = services(ch=ch)
    s.settings.base_currency, s.settings.currency_rates = "USD", {"EUR": 1.1}
    body = client(s).get(f"/v1/profiles/profile_id/{ANN}", headers=READ).json()
    assert body["traits"] == {"name": "Ann", "plan": "pro"}
    assert [(g["group_id"], g["traits"]) for g in body["groups"]] == [
        ("acme", {"industry": "retail", "name": "Acme Inc"})
    ]
    assert body["computed"]["revenue_by_currency"] == {"": 5.0, "EUR": 100.0, "USD": 30.0}
    assert body["computed"]["lifetime_value"] == {"value": 145.0, "currency": "USD", "unconverted": []}
