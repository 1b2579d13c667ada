"""end_to_end: the whole pipeline (`cdp run`: collector -> stitching -> ClickHouse) taking a burst as fast as the
collector accepts it, and how fast that burst settles.

The generator's journeys of enough people for ``e2e_events`` events: online and mobile events are posted to
/v1/batch by concurrent clients (100-event batches, ``e2e_connections`` at once, back to back, 503s retried), the
offline ones (till receipts and CRM contacts, which carry only an e-mail or a phone) go through `cdp import`.
Figures: the rate the collector accepted events (first POST to last answer), the rate they settled (first POST
until every event is in `cdp.events`, every event with an identifier has its profile, and `cdp.identities` has
stopped changing), their ratio, and pairwise precision and recall of `cdp.identities` against what the events
prove, against two references: the identity rules' reference (``bench.accuracy.rules_clusters``: what the
pure protocol with identity/rules.yaml reaches on the same events in the order they were sent; placeholders the
blocklist does not know link people, limits refuse links) and the evidence (``bench.accuracy.evidence_clusters``:
identifiers linked by appearing in one event, shared devices and the generator's placeholders left out). Both are
scored on the evidence's identifiers, the ones that belong to one person; the gap between the two is the rules'
own (the reference against the evidence, in details).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.accuracy import evidence_clusters, fold_case, pairwise_scores, rules_clusters
from bench.context import Context
from bench.core import Result, StageError, register
from bench.generator import GeneratorConfig, generate_events
from bench.stages.identity import _import_offline, _read_identities, _send_online, _wait_stable, sent_order

EVENTS_PER_PERSON = 42  # the generator's full journeys, on average


@register
class EndToEndStage:
    name = "end_to_end"
    description = "cdp run: a burst through /v1/batch as fast as accepted, and how fast it settles (rate, accuracy)"

    def run(self, ctx: Context) -> list[Result]:
        m = ctx.mode
        cdp = ctx.pipeline()
        people = max(1, m.e2e_events // EVENTS_PER_PERSON)
        cfg = GeneratorConfig(people=people, seed=m.seed + 23)
        tag = f"e2e{ctx.tag}"
        truth: dict[str, str] = {}
        offline_path = ctx.workdir / "e2e-offline.jsonl"
        watch = ctx.watch(cdp=cdp.pid)
        ctx.log(f"end to end: {people:,} people (about {m.e2e_events:,} events) as fast as the collector takes them")
        started = time.monotonic()
        stats = asyncio.run(_send_online(cdp, cfg, tag, offline_path, truth, connections=m.e2e_connections))
        accepted_s = time.monotonic() - started
        imported = _import_offline(ctx, cdp, offline_path)
        expected = stats["accepted"] + imported
        ctx.log(f"end to end: {stats['accepted']:,} accepted in {accepted_s:.1f} s, {imported:,} imported")
        settled_s = _wait_stable(ctx, cdp, tag, expected, m.accuracy_timeout_s) - started
        peaks = watch.read()
        unstamped = int(
            cdp.scalar(
                f"SELECT count() FROM cdp.events WHERE startsWith(message_id, '{tag}-') AND profile_id = '' "
                "AND identity_key != ''"
            )
            or 0
        )
        if unstamped:
            raise StageError(f"{unstamped} events with an identifier have no profile")
        predicted = fold_case(_read_identities(cdp))
        proven = fold_case(evidence_clusters(generate_events(cfg)))
        reference = rules_clusters(sent_order(cfg), only=proven)
        scores = pairwise_scores(predicted, reference)
        against_evidence = pairwise_scores(predicted, proven)
        accept_rate = stats["accepted"] / accepted_s
        settle_rate = expected / settled_s
        details: dict[str, Any] = {
            "people": people,
            "events_accepted": stats["accepted"],
            "events_rejected": stats["rejected"],
            "events_imported": imported,
            "seconds_to_accept": accepted_s,
            "seconds_to_settle": settled_s,
            "connections": m.e2e_connections,
            "scores_against_rules": scores.as_dict(),
            "scores_against_evidence": against_evidence.as_dict(),
            "rules_reference_against_evidence": pairwise_scores(reference, proven).as_dict(),
            "evidence_identifiers_the_rules_do_not_extract": len(proven) - len(reference),
        }
        return [
            Result(
                self.name,
                f"/v1/batch accepted ({stats['accepted']:,} events, {m.e2e_connections} connections)",
                accept_rate,
                "events/s",
                peak_rss_mb=peaks,
                details=details,
            ),
            Result(
                self.name,
                f"settled: stored, stamped, identities stable ({expected:,} events)",
                settle_rate,
                "events/s",
                accept_rate,
                "accepted rate",
                peak_rss_mb=peaks,
                details=details,
            ),
            *(
                Result(self.name, f"pairwise {label} against {what}", value, "fraction", 1.0, base, details=details)
                for what, base, got in (
                    ("what the events prove under the identity rules", "rules reference", scores),
                    ("the evidence (placeholders, shared devices left out)", "evidence", against_evidence),
                )
                for label, value in (("precision", got.precision), ("recall", got.recall))
            ),
        ]
