"""Shared data of the sinks and API tests: rows as the sink writes them."""

from __future__ import annotations

from typing import Any

import orjson

from sinks.clickhouse import ClickHouse
from sinks.profile_rollup import ProfileRollup
from sinks.rows import IDENTITY_COLUMNS, identity_row

ANN, BOB = "p-ann", "p-bob"
# A context as the collector stamps it for a yes to advertising: the DMP side keeps no other cookie.
ADVERTISING_YES: dict[str, Any] = {"consent": {"purposes": {"advertising": True}}}


def consented(context: dict[str, Any] | None = None) -> dict[str, Any]:
    """``context`` with advertising consent, as an SDK's consent wrapper and the collector's stamp leave it."""
    return {**(context or {}), **ADVERTISING_YES}


def landing_event(mid: str, profile: str, ts: str, **fields: Any) -> bytes:
    body = {
        "messageId": mid,
        "type": "track",
        "channel": "online",
        "profileId": profile,
        "identityKey": f"user_id:{profile}",
        "userId": profile,
        "timestamp": ts,
        "receivedAt": ts,
        **fields,
    }
    return orjson.dumps(body)


def account_world(ch: ClickHouse) -> None:
    """Ann at Acme (retail; orders in EUR, USD and without a currency), Bob at Globex (energy)."""
    for profile in (ANN, BOB):
        ident = {"id_type": "user_id", "id_value": profile, "profile_id": profile, "first_seen_ms": 0}
        ch.insert("identities_store", [identity_row({**ident, "updated_ms": 0, "version": 1})], IDENTITY_COLUMNS)
    acme = {"name": "Acme Inc", "industry": "retail"}
    ch.insert_json_lines(
        "events_landing",
        [
            landing_event(
                "g1",
                ANN,
                "2026-01-01T00:00:00Z",
                type="group",
                groupId="acme",
                traits=acme,
                context={"traits": {"plan": "pro"}},
            ),
            landing_event(
                "g2", ANN, "2026-01-02T00:00:00Z", type="group", groupId="acme", traits={"industry": "retail"}
            ),
            landing_event(
                "g3",
                BOB,
                "2026-01-03T00:00:00Z",
                type="group",
                groupId="globex",
                traits={"name": "Globex", "industry": "energy"},
            ),
            landing_event("i1", ANN, "2026-01-01T00:00:00Z", type="identify", traits={"name": "Ann"}),
            landing_event(
                "o1",
                ANN,
                "2026-01-04T00:00:00Z",
                event="Order Completed",
                properties={"revenue": 100, "currency": "eur"},
            ),
            landing_event(
                "o2",
                ANN,
                "2026-01-05T00:00:00Z",
                event="Order Completed",
                properties={"revenue": 30, "currency": "USD"},
            ),
            landing_event("o3", ANN, "2026-01-06T00:00:00Z", event="Order Completed", properties={"revenue": 5}),
        ],
    )
    ProfileRollup(ch).step()  # `profiles` holds the rows as of the rollup's last step
