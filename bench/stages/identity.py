"""identity accuracy: pairwise precision / recall / F1 of the stitched identities against the generator's truth,
beside the evidence ceiling (the best any deterministic stitcher can reach on the same events).

P people are generated; their online and mobile events are posted to /v1/batch (100-event batches, a few
concurrent connections), their offline events (till receipts, CRM contacts: e-mail or phone only) go through
`cdp import` as JSON Lines, the offline path. Once every event is in `cdp.events` and the identity topic and
`cdp.identities_store` have stopped moving, `cdp.identities` is read through /v1/sql and scored with
bench.accuracy.pairwise_scores.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.accuracy import evidence_clusters, fold_case, pairwise_scores, predicted_key
from bench.context import Context
from bench.core import Result, StageError, register
from bench.generator import GeneratorConfig, generate_events, strip_truth, truth_identifiers
from bench.stack import ROOT, CdpClient, OffsetCounter, child_env

CONNECTIONS = 4
PAGE = 50_000
STABLE_POLLS = 3

LEAN = {
    "sessions_per_cookie": (1, 1),
    "sessions_per_device": (1, 1),
    "events_per_session": (1, 1),
    "receipts_per_person": (1, 1),
}


async def _send_online(
    cdp: CdpClient,
    cfg: GeneratorConfig,
    tag: str,
    offline_path: Path,
    truth: dict[str, str],
    connections: int = CONNECTIONS,
) -> dict[str, int]:
    """Stream the population: truth map, /v1/batch for online/mobile, a JSONL file for offline."""
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=connections * 4)
    stats = {"posted": 0, "accepted": 0, "rejected": 0, "offline": 0}
    failures: list[str] = []

    async def sender(http: httpx.AsyncClient) -> None:
        while (item := await queue.get()) is not None:
            channel, body = item
            for attempt in range(5):
                r = await http.post(
                    f"{cdp.url}/v1/batch",
                    content=body,
                    auth=(cdp.write_keys[channel], ""),
                    headers={"content-type": "application/json"},
                )
                if r.status_code == 200:
                    answer = r.json()
                    stats["accepted"] += answer.get("accepted", 0)
                    stats["rejected"] += len(answer.get("rejected", []))
                    break
                if r.status_code != 503 or attempt == 4:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    break
                await asyncio.sleep(1.0)

    batches: dict[str, list[dict[str, Any]]] = {"online": [], "mobile": []}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=connections)) as http:
        tasks = [asyncio.create_task(sender(http)) for _ in range(connections)]
        with offline_path.open("wb") as offline:
            for n, event in enumerate(generate_events(cfg)):
                for key, person in truth_identifiers(event):
                    truth[key] = person
                clean, meta = strip_truth(event)
                clean["messageId"] = f"acc{tag}-{clean['messageId']}"
                channel = meta["channel"] if meta else "online"
                if channel == "offline":
                    offline.write(orjson.dumps(clean) + b"\n")
                    stats["offline"] += 1
                    continue
                batch = batches[channel]
                batch.append(clean)
                if len(batch) >= 100:
                    stats["posted"] += len(batch)
                    await queue.put((channel, orjson.dumps({"batch": batch})))
                    batches[channel] = []
                if n % 2000 == 0:
                    await asyncio.sleep(0)
            for channel, batch in batches.items():
                if batch:
                    stats["posted"] += len(batch)
                    await queue.put((channel, orjson.dumps({"batch": batch})))
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
    if failures:
        raise StageError(f"{len(failures)} batches failed, first: {failures[0]}")
    return stats


def _is_offline(event: Mapping[str, Any]) -> bool:
    return bool((event.get("_truth") or {}).get("channel") == "offline")


def sent_order(cfg: GeneratorConfig) -> Iterator[dict[str, Any]]:
    """The population's events in the order ``_send_online`` and ``_import_offline`` hand them to the pipeline:
    the online and mobile ones as generated, then the offline ones (imported after the posts) as generated."""
    yield from (event for event in generate_events(cfg) if not _is_offline(event))
    yield from (event for event in generate_events(cfg) if _is_offline(event))


def _import_offline(ctx: Context, cdp: CdpClient, path: Path) -> int:
    """`cdp import FILE --write-key KEY`: the offline path, into the pipeline's broker and topics."""
    if path.stat().st_size == 0:
        return 0
    env = child_env(
        CDP_KAFKA_BOOTSTRAP=cdp.bootstrap, CDP_TOPIC_PREFIX=cdp.topic_prefix, CDP_DATA_DIR=str(ctx.workdir / "import")
    )
    if cdp.privacy_key:  # the stack's suppressions are screened with its key (cdp/importer.py)
        env["CDP_PRIVACY_KEY"] = cdp.privacy_key
    r = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "import", str(path), "--write-key", cdp.write_keys["offline"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    m = re.search(r"imported (\d+) events", r.stdout)
    if r.returncode != 0 or not m:
        raise StageError(f"cdp import failed ({r.returncode}): {(r.stdout + r.stderr)[-1000:]}")
    return int(m.group(1))


def _wait_stable(ctx: Context, cdp: CdpClient, tag: str, expected: int, timeout: float) -> float:
    """Wait until all events are in ClickHouse and identities stopped changing (the identity-ops topic, the
    identity rows and their latest version unchanged for STABLE_POLLS polls 1 s apart); returns the
    monotonic time of the last change seen."""
    started = time.monotonic()
    deadline = started + timeout
    ops = OffsetCounter(cdp.bootstrap, [f"{cdp.topic_prefix}.identity.ops"])
    try:
        seen = 0
        reported = started
        while time.monotonic() < deadline:
            seen = int(
                cdp.scalar(
                    f"SELECT uniqExact(message_id) FROM cdp.events_store WHERE startsWith(message_id, 'acc{tag}-')"
                )
                or 0
            )
            if seen >= expected:
                break
            if time.monotonic() - reported >= 15:
                reported = time.monotonic()
                ctx.log(f"identity accuracy: {seen:,} of {expected:,} events stored")
            time.sleep(1.0)
        else:
            raise StageError(f"only {seen} of {expected} events reached cdp.events in {timeout:.0f} s")
        ctx.log(
            f"identity accuracy: all {expected:,} events stored after {time.monotonic() - started:.0f} s; "
            "waiting for identities to settle"
        )
        last: tuple[Any, ...] | None = None
        changed = time.monotonic()
        stable = 0
        while time.monotonic() < deadline:
            polled = time.monotonic()
            row = cdp.sql("SELECT count(), max(version) FROM cdp.identities_store")[0]
            state = (ops.count(), *row)
            if state == last:
                stable += 1
            else:
                stable, changed = 0, polled
            last = state
            if stable >= STABLE_POLLS:
                return changed
            if time.monotonic() - reported >= 15:
                reported = time.monotonic()
                ctx.log(
                    f"identity accuracy: still settling (identity messages {state[0]:,}, identity rows {state[1]:,})"
                )
            time.sleep(1.0)
        raise StageError(f"identities still changing after {timeout:.0f} s")
    finally:
        ops.close()


def _read_identities(cdp: CdpClient) -> dict[str, str]:
    predicted: dict[str, str] = {}
    offset = 0
    while True:
        rows = cdp.sql(
            f"SELECT id_type, id_value, profile_id FROM cdp.identities "
            f"ORDER BY id_type, id_value LIMIT {PAGE} OFFSET {offset}"
        )
        for id_type, id_value, profile_id in rows:
            predicted[predicted_key(id_type, id_value)] = profile_id
        if len(rows) < PAGE:
            return predicted
        offset += PAGE


@register
class IdentityAccuracyStage:
    name = "identity_accuracy"
    description = "pairwise precision/recall/F1 of cdp.identities vs the generator's truth and evidence ceiling"

    def run(self, ctx: Context) -> list[Result]:
        m = ctx.mode
        cdp = ctx.pipeline()
        for channel in ("online", "mobile", "offline"):
            if channel not in cdp.write_keys:
                raise StageError(f"no write key for the {channel} channel")
        knobs: dict[str, Any] = dict(LEAN) if m.accuracy_lean else {}
        cfg = GeneratorConfig(people=m.accuracy_people, seed=m.seed, **knobs)
        tag = ctx.tag
        watch = ctx.watch(cdp=cdp.pid)
        truth: dict[str, str] = {}
        offline_path = ctx.workdir / "accuracy-offline.jsonl"
        ctx.log(f"identity accuracy: {m.accuracy_people:,} people through /v1/batch and cdp import")
        started = time.monotonic()
        stats = asyncio.run(_send_online(cdp, cfg, tag, offline_path, truth))
        imported = _import_offline(ctx, cdp, offline_path)
        sent_s = time.monotonic() - started
        expected = stats["accepted"] + imported
        ctx.log(f"identity accuracy: {stats['accepted']:,} events accepted, {imported:,} imported in {sent_s:.0f} s")
        settle_s = _wait_stable(ctx, cdp, tag, expected, m.accuracy_timeout_s) - started
        peaks = watch.read()
        predicted = fold_case(_read_identities(cdp))
        truth = fold_case(truth)
        scores = pairwise_scores(predicted, truth)
        ceiling = pairwise_scores(fold_case(evidence_clusters(generate_events(cfg))), truth)
        missing = sum(1 for k in truth if k not in predicted)
        details = {
            "people": m.accuracy_people,
            "events_accepted": stats["accepted"],
            "events_rejected": stats["rejected"],
            "events_imported": imported,
            "send_seconds": sent_s,
            "seconds_from_first_post_to_stable": settle_s,
            "end_to_end_events_per_s": expected / settle_s if settle_s else None,
            "truth_identifiers": len(truth),
            "truth_identifiers_missing_in_cdp": missing,
            "scores": scores.as_dict(),
            "evidence_ceiling": ceiling.as_dict(),
            "generator": {"seed": cfg.seed, **{k: list(v) for k, v in knobs.items()}},
        }
        rows = [
            ("precision", scores.precision, ceiling.precision),
            ("recall", scores.recall, ceiling.recall),
            ("F1", scores.f1, ceiling.f1),
        ]
        results = [
            Result(
                self.name,
                f"pairwise {label} ({m.accuracy_people:,} people)",
                value,
                "fraction",
                base,
                "evidence ceiling",
                peak_rss_mb=peaks,
                details=details,
            )
            for label, value, base in rows
        ]
        # How long the population took from the first POST to a settled identity graph, as a rate.
        results.append(
            Result(
                self.name,
                f"events/s from POST to settled identities ({expected:,} events)",
                expected / settle_s if settle_s else None,
                "events/s",
                peak_rss_mb=peaks,
                details={"seconds_from_first_post_to_stable": settle_s, "send_seconds": sent_s},
            )
        )
        return results
