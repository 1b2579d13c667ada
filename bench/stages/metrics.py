"""metrics: every metric family of the README's metrics table moved on the shared pipeline's ``/metrics``.

It runs after the other stages of the shared `cdp run` (freshness, identity accuracy, end to end, lookup) and
drives what they leave still: two audiences (the console stage's rules) and a few people whose events make them
enter, an event refused at the edge, a suppressed identifier's event, and the query API as an integration calls it
with a token (profile read, lookup, SQL) and without a valid one. Alone (``--only metrics``) it drives all of it.
It scrapes the pipeline at every poll while the audiences fill, then compares each family with the scrape taken
when the pipeline started: one row per family (its delta), and the stage fails naming the families that did not
move (bench.metrics_scrape ``NOT_DRIVEN``: the few a healthy stack cannot move).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.context import Context
from bench.core import Result, StageError, register
from bench.data import PREVIEW, heavy_rule
from bench.metrics_scrape import report_lines, scrape

PEOPLE = 20
WAIT_S = 180.0


def _events(tag: str, people: int) -> list[dict[str, Any]]:
    """Per person: a login with an e-mail, three pages and an order: a member of both audiences."""
    now = datetime.now(UTC).isoformat()
    events: list[dict[str, Any]] = []
    for i in range(people):
        cookie, user = f"{tag}-c{i}", f"{tag}-u{i}"
        events.append({"type": "identify", "anonymousId": cookie, "userId": user, "traits": {"email": _email(tag, i)}})
        events += [{"type": "page", "name": f"p{k}", "anonymousId": cookie} for k in range(3)]
        events.append({"type": "track", "event": "Order Completed", "userId": user, "properties": {"revenue": 10}})
    return [{**e, "messageId": uuid.uuid4().hex, "timestamp": now} for e in events]


def _email(tag: str, i: int) -> str:
    return f"{tag}-{i}@example.com"


def _regulation(http: httpx.Client, body: dict[str, Any]) -> None:
    """Posts a regulation and waits until it ran (the collector then follows the ledger)."""
    r = http.post("/v1/regulations", json=body)
    if r.status_code != 202:
        raise StageError(f"POST /v1/regulations {r.status_code}: {r.text[:300]}")
    deadline = time.monotonic() + WAIT_S
    while http.get(f"/v1/regulations/{r.json()['id']}").json()["status"] in ("pending", "running"):
        if time.monotonic() > deadline:
            raise StageError(f"regulation {r.json()['id']} did not finish in {WAIT_S:.0f} s")
        time.sleep(0.5)


@register
class MetricsStage:
    name = "metrics"
    description = "every metric family of the README moves on the shared pipeline's /metrics (audiences, API driven)"

    def run(self, ctx: Context) -> list[Result]:
        cdp = ctx.pipeline()
        tag = f"mx{ctx.tag}"
        write_key = cdp.write_keys["online"]
        headers = {"Authorization": f"Bearer {cdp.admin_token}"}
        scrapes: list[dict[str, float]] = []
        with httpx.Client(base_url=cdp.url, headers=headers, timeout=60) as http:
            audiences = {
                http.post("/v1/audiences", json={**PREVIEW, "name": f"{tag} buyers"}).json()["id"],
                http.post(
                    "/v1/audiences", json={"name": f"{tag} heavy", "scope": "profile", "rule": heavy_rule()}
                ).json()["id"],
            }
            gone = f"{tag}-gone"
            _regulation(http, {"type": "suppress", "subjects": [{"id_type": "anonymous_id", "value": gone}]})
            batch = [*_events(tag, PEOPLE), {"type": "track", "event": "Dropped", "anonymousId": gone}]
            r = httpx.post(f"{cdp.url}/v1/batch", json={"batch": batch}, auth=(write_key, ""), timeout=60)
            if r.status_code != 200:
                raise StageError(f"/v1/batch {r.status_code}: {r.text[:300]}")
            httpx.post(f"{cdp.url}/v1/batch", json={"batch": [{"type": "track"}]}, auth=(write_key, ""), timeout=60)
            ctx.log(f"metrics: {len(batch)} events posted, audiences {sorted(audiences)}; waiting for their members")
            started = time.monotonic()
            last = _email(tag, PEOPLE - 1)
            while True:  # an integration's calls, until the last person is in both audiences
                scrapes.append(scrape(cdp.url))
                found = http.get(f"/v1/lookup/email/{last}")
                http.get(f"/v1/profiles/email/{last}")
                cdp.sql(f"SELECT count() FROM cdp.events WHERE user_id LIKE '{tag}-%'")
                httpx.get(f"{cdp.url}/v1/lookup/email/{last}", headers={"Authorization": "Bearer wrong"})
                httpx.get(f"{cdp.url}/v1/profiles/email/{last}")
                if found.status_code == 200 and audiences <= set(found.json()["audiences"]):
                    break
                if time.monotonic() - started > WAIT_S:
                    raise StageError(f"{last} was not in both audiences after {WAIT_S:.0f} s: {found.text[:200]}")
                time.sleep(1.0)
            ctx.log(f"metrics: members in both audiences after {time.monotonic() - started:.1f} s")
            time.sleep(6.0)  # one more statistics interval of the consumers (cdp_consumer_lag)
            scrapes.append(scrape(cdp.url))
        moves = ctx.pipeline_moves(scrapes)
        for line in report_lines(moves):
            ctx.log(f"metrics: {line}")
        results = [
            Result(
                self.name,
                f"{m.stage}: {m.family} since the pipeline started",
                m.delta,
                "moved" if m.moved else "not moved",
                details={"series": m.series, "moved": m.moved, "required": m.required},
            )
            for m in moves
        ]
        still = [m.family for m in moves if m.required and not m.moved]
        if still:
            raise StageError(f"README metric families that did not move: {', '.join(still)}", results)
        return results
