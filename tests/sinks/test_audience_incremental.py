"""Incremental audience membership on the real engine: after a full evaluation for a new definition, new events
re-check only the members they touched, and time windows expire members by reading only the events near their
edge; the members always equal a full evaluation."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.audience import validate_rule
from sinks.audience_eval import AudienceEvaluator
from sinks.audience_sql import compile_audience
from sinks.clickhouse import ClickHouse
from sinks.profile_rollup import ProfileRollup
from sinks.rows import IDENTITY_COLUMNS, identity_row
from tests.sinks.fixtures import consented


class Definitions:
    def __init__(self, defs: list[dict[str, Any]]) -> None:
        self.defs, self.version = defs, 1

    def all(self) -> list[dict[str, Any]]:
        return self.defs


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send_sync(self, records: Iterable[tuple[str, bytes, bytes]]) -> None:
        self.sent.extend(records)


PRICING = {"event": None, "type": "page", "where": [{"property": "path", "op": "eq", "value": "/pricing"}]}
BOUGHT = {"event": "Order Completed", "type": "track"}
RULES = {
    "pricing_no_buy": ("profile", {"all": [{**PRICING, "within_days": 7}, {"not": BOUGHT}]}),
    "big_spender": ("profile", {"computed": "revenue", "op": "gt", "value": 100}),
    "pro": ("profile", {"trait": "plan", "op": "eq", "value": "pro"}),
    "offer_today": ("anonymous", {"event": "Viewed Offer", "type": "track", "within_days": 1}),
}


def add(ch: ClickHouse, n: int, person: str, when: datetime, **event: Any) -> None:
    """An event of ``person`` (profile p-<person>, anonymous id a-<person>), with its identity."""
    e = {
        "messageId": f"m{n}",
        "channel": "online",
        "anonymousId": f"a-{person}",
        "profileId": f"p-{person}",
        "identityKey": f"anonymous_id:a-{person}",
        "timestamp": when.isoformat(),
        "receivedAt": when.isoformat(),
        "context": consented(),
    }
    ch.insert_json_lines("events_landing", [orjson.dumps(e | event)])  # as the sink does
    ms = int(when.timestamp() * 1000)
    ident = {
        "id_type": "anonymous_id",
        "id_value": f"a-{person}",
        "profile_id": f"p-{person}",
        "first_seen_ms": ms,
        "updated_ms": ms,
        "version": 1,
    }
    ch.insert("identities_store", [identity_row(ident)], IDENTITY_COLUMNS)


def full(ch: ClickHouse, audience: str) -> set[str]:
    """The members by a full evaluation, over `profiles` brought up to date as the evaluator does."""
    ProfileRollup(ch).step()
    scope, rule = RULES[audience]
    compiled = compile_audience(validate_rule(rule, scope), scope, ch.database)
    return {r[0] for r in ch.query(compiled.sql, compiled.params)[1]}


def test_touched_members_and_window_edges(ch: ClickHouse) -> None:
    now = datetime.now(UTC)
    add(ch, 1, "x", now - timedelta(days=2), type="page", name="Pricing", properties={"path": "/pricing"})
    add(ch, 2, "y", now - timedelta(hours=1), type="track", event="Order Completed", properties={"revenue": 150})
    defs = Definitions([{"id": a, "name": a, "scope": s, "rule": r, "created_at_ms": 0} for a, (s, r) in RULES.items()])
    ev = AudienceEvaluator(ch, Producer(), defs, "changes", lambda: 0)  # type: ignore[arg-type]
    ev.refresh_definitions()
    assert ev.evaluations == len(RULES)
    assert ev.members["pricing_no_buy"] == {"p-x"} and ev.members["big_spender"] == {"p-y"}

    # new events: x buys (leaves pricing_no_buy, not yet a big spender), z identifies as pro, w views an offer
    # that leaves the one-day window in a moment
    add(ch, 3, "x", now, type="track", event="Order Completed", properties={"revenue": 60})
    add(ch, 4, "z", now, type="identify", traits={"plan": "pro"})
    edge = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=15)
    add(ch, 5, "w", edge, type="track", event="Viewed Offer")
    ev.recheck_touched()
    assert ev.evaluations == len(RULES)  # no full evaluation: restricted ones
    assert ev.rechecks > 0 and ev.last_batch["profiles"] == 3  # x, z and w, not y
    for audience in RULES:
        assert ev.members[audience] == full(ch, audience), audience
    assert ev.members["offer_today"] == {"anonymous_id:a-w"}

    print(f"re-check of the touched members: {ev.last_batch['s']:.2f} s")
    ev.recheck_windows()  # the edge has not passed yet: w stays
    assert ev.members["offer_today"] == {"anonymous_id:a-w"}
    time.sleep(max(0.0, (edge + timedelta(days=1) - datetime.now(UTC)).total_seconds()) + 0.5)
    ev.recheck_windows()
    assert ev.members["offer_today"] == set() == full(ch, "offer_today")
    changes = [r for r in ch.query(f"SELECT audience_id, member, status FROM {ch.database}.audience_members")[1]]
    assert ("offer_today", "anonymous_id:a-w", "exited") in changes
    assert ("pricing_no_buy", "p-x", "exited") in changes and ("pro", "p-z", "entered") in changes
