"""read_side: what reading profiles and keeping audiences costs as the store grows (quick: 100k and 1M events;
full: 1M and 10M).

Per size, a child process with its own embedded store generates the events inside the engine, as the analyst
stage does (200,000 people, 1-3 cookies each, with their identities; one event in fifty an identify with a
trait), through `events_store`, so the per-key profile state is built by the same views as in production; the
rollup then catches up. Measured there:

* one profile read (the queries of `GET /v1/profiles`: sinks/profile_sql.py) for random people: p50/p99;
* the README's LTV-by-channel question through `profiles`, beside the same question on the raw table;
* 20 audiences of the README's rule shapes: a full evaluation of each (what a new definition costs), and a
  re-check of the members a batch of new events touched (1,000 profiles) for all 20 (what the stream pays per
  batch);
* the serving index (streams/serving.py) filled with the store's identifiers and one membership per
  identifier: bytes per identifier and per membership (Python heap, tracemalloc).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.core import Result, percentile, register
from bench.stack import self_peak_rss_mb
from bench.stages.analyst import FILL_EVENTS, FILL_IDENTITIES, PEOPLE, RAW, readme_queries

# one event in fifty an identify with a plan trait
FILL = FILL_EVENTS.replace(
    "'{}' AS traits",
    "if(number % 50 = 0, concat('{\"plan\":\"', ['free', 'pro', 'team'][number % 3 + 1], '\"}'), '{}') AS traits",
).replace(
    "if(number % 5 = 0, 'page', 'track') AS type",
    "multiIf(number % 50 = 0, 'identify', number % 5 = 0, 'page', 'track') AS type",
)
VIEWED = {"event": "Product Viewed", "type": "track"}
BOUGHT = {"event": "Order Completed", "type": "track"}
HOME = {"event": None, "type": "page"}
AUDIENCES: list[dict[str, Any]] = [
    {"computed": "revenue", "op": "gt", "value": 500},
    {"computed": "revenue", "op": "gt", "value": 2000},
    {"computed": "orders", "op": "gte", "value": 3},
    {"computed": "events", "op": "gte", "value": 20},
    {"computed": "last_seen", "op": "gte", "value": "2026-11-01"},
    {"computed": "last_channel", "op": "eq", "value": "mobile"},
    {"trait": "plan", "op": "eq", "value": "pro"},
    {"trait": "plan", "op": "in", "value": ["team", "pro"]},
    {**VIEWED, "within_days": 7},
    {**VIEWED, "within_days": 30, "count": {"op": "gte", "value": 3}},
    {**BOUGHT, "within_days": 30},
    {"not": BOUGHT},
    {"all": [{**HOME, "within_days": 7}, {"not": BOUGHT}]},
    {"all": [{"trait": "plan", "op": "eq", "value": "free"}, {"computed": "revenue", "op": "gt", "value": 500}]},
    {"any": [{"computed": "revenue", "op": "gte", "value": 1000}, {"computed": "orders", "op": "gte", "value": 10}]},
    {**VIEWED, "where": [{"property": "category", "op": "eq", "value": "c3"}], "within_days": 30},
    {"event": "Product Added", "type": "track", "within_days": 14},
    {"all": [{"event": "Product Added", "type": "track", "within_days": 14}, {"not": {**BOUGHT, "within_days": 14}}]},
    {"computed": "first_seen", "op": "lt", "value": "2026-10-01"},
    {"not": {"trait": "plan", "op": "exists"}},
]
TOUCHED = 1_000
PEOPLE_SQL = """
SELECT DISTINCT profile_id FROM {db}.identities_store
WHERE (id_type, id_value) IN (SELECT 'anonymous_id', anonymous_id FROM {db}.events_store
                              ORDER BY rand() LIMIT {n:UInt32})
"""
PROFILE_READS = 200


def child(n: int, path: str) -> dict[str, Any]:
    from schemas.audience import validate_rule
    from sinks.audience_sql import compile_audience
    from sinks.clickhouse import ClickHouse
    from sinks.migrate import migrate
    from sinks.profile_rollup import ProfileRollup
    from sinks.profile_sql import KEYS_OF_PROFILES_SQL, read_profile
    from streams.serving import MembershipIndex

    ch = ClickHouse(f"chdb://{path}", "cdp")
    migrate(ch)
    db = ch.database
    t0 = time.perf_counter()
    ch.command(FILL_IDENTITIES.replace("{db}", db).replace("{ids}", str(PEOPLE * 3)))
    for start in range(0, n, 1_000_000):  # in slices: bounded memory per insert
        size = min(1_000_000, n - start)
        sql = FILL.replace("{db}", db).replace("{people}", str(PEOPLE))
        sql = sql.replace("FROM numbers({n})", f"FROM numbers({start}, {size})").replace("{n}", str(n))
        ch.command(sql)
    note(f"filled {n:,}")
    out: dict[str, Any] = {"fill_s": time.perf_counter() - t0, "rows": ch.scalar(f"SELECT count() FROM {db}.events")}
    t0 = time.perf_counter()
    keys = ProfileRollup(ch).step()
    out["rollup_s"], out["rollup_keys"] = time.perf_counter() - t0, keys

    note("rolled up")
    rng = random.Random(7)
    # people with events (with fewer events than people, many have none)
    people = [r[0] for r in ch.query(PEOPLE_SQL.replace("{db}", db), {"n": max(PROFILE_READS, TOUCHED)})[1]]
    reads = []
    for p in people[:PROFILE_READS]:
        t = time.perf_counter()
        found = read_profile(ch, p)
        reads.append((time.perf_counter() - t) * 1000)
        assert found is not None and found.row["events"] > 0, p
    out["profile_ms"] = reads

    note("profiles read")
    ltv = readme_queries()["ltv"]
    out["ltv"] = {label: best_ms(ch, q) for label, q in (("view", ltv), ("raw", RAW["ltv"].replace("{db}", db)))}

    rules = [validate_rule(r, "profile") for r in AUDIENCES]
    full_ms = []
    for rule in rules:
        compiled = compile_audience(rule, "profile", db)
        t = time.perf_counter()
        ch.query(compiled.sql, compiled.params)
        full_ms.append((time.perf_counter() - t) * 1000)
    out["full_ms"] = full_ms
    note("full evaluations")
    batches = []
    for _ in range(3):
        touched = rng.sample(people, min(TOUCHED, len(people)))
        t = time.perf_counter()
        member_keys = ch.scalar(KEYS_OF_PROFILES_SQL.replace("{db}", db), {"members": touched})
        for rule in rules:
            compiled = compile_audience(rule, "profile", db, restrict_to=touched, member_keys=member_keys)
            ch.query(compiled.sql, compiled.params)
        batches.append((time.perf_counter() - t) * 1000)
    out["batch_ms"] = batches
    note("re-checks")
    out["index"] = index_bytes(ch, MembershipIndex)
    out["rss_mb"] = self_peak_rss_mb()
    return out


def note(what: str) -> None:
    print(f"[read_side child {time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def best_ms(ch: Any, sql: str) -> float:
    best = float("inf")
    for _ in range(3):  # best of three: the first run also warms the page cache
        t = time.perf_counter()
        ch.query(sql)
        best = min(best, (time.perf_counter() - t) * 1000)
    return best


def index_bytes(ch: Any, index_class: Any) -> dict[str, float]:
    """The serving index with every identifier of the store, then one membership per identifier (audience ids
    as the evaluator names them), measured as Python heap growth."""
    _, rows = ch.query(f"SELECT id_type, id_value, profile_id, version FROM {ch.database}.identities_store")
    tracemalloc.start()
    index = index_class()
    base = tracemalloc.get_traced_memory()[0]
    for id_type, id_value, profile_id, version in rows:
        index.apply_identity({"id_type": id_type, "id_value": id_value, "profile_id": profile_id, "version": version})
    after_ids = tracemalloc.get_traced_memory()[0]
    for i, (id_type, id_value, _, _) in enumerate(rows):
        index.apply_change(f"{id_type}:{id_value}", f"aud_{i % 20:016x}", True)
    after_members = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    n = max(len(rows), 1)
    return {
        "identifiers": len(rows),
        "per_identifier": (after_ids - base) / n,
        "per_membership": (after_members - after_ids) / n,
    }


@register
class ReadSideStage:
    name = "read_side"
    description = (
        "profile reads, LTV through profiles, audience full and per-batch evaluation, index bytes at two sizes"
    )

    def run(self, ctx: Context) -> list[Result]:
        sizes = getattr(
            ctx.mode, "read_side_events", (1_000_000, 10_000_000) if ctx.mode.name == "full" else (100_000, 1_000_000)
        )
        results: list[Result] = []
        p50s: list[float] = []
        for n in sizes:
            ctx.log(f"read_side: {n:,} events in a child process")
            with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
                mp = multiprocessing.get_context("spawn")
                with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=mp) as pool:
                    out = pool.submit(child, n, str(Path(tmp) / "ch")).result()
            ctx.log(
                f"read_side: filled in {out['fill_s']:.1f} s, "
                f"rollup of {out['rollup_keys']:,} keys {out['rollup_s']:.1f} s"
            )
            peaks = {"chdb child": round(out["rss_mb"], 1)}
            rows = out["rows"]
            p50 = percentile(out["profile_ms"], 50) or 0.0
            p50s.append(p50)
            index = out["index"]

            def row(
                figure: str,
                value: float | None,
                unit: str,
                baseline: float | None = None,
                label: str = "",
                peaks: dict[str, float] = peaks,
            ) -> Result:
                return Result(self.name, figure, value, unit, baseline, label, lower_is_better=True, peak_rss_mb=peaks)

            reads = row(f"profile read p50, {rows:,} events", p50, "ms", p50s[0], f"p50 at {sizes[0]:,}")
            reads.details = {"fill_s": out["fill_s"], "rollup_s": out["rollup_s"], "rollup_keys": out["rollup_keys"]}
            batch = row(
                f"20 audiences re-checked for {TOUCHED:,} touched profiles, {rows:,} events",
                min(out["batch_ms"]),
                "ms",
                sum(out["full_ms"]),
                "20 full evaluations",
            )
            batch.details = {"batches_ms": out["batch_ms"], "full_ms": out["full_ms"]}
            results += [
                reads,
                row(f"profile read p99, {rows:,} events", percentile(out["profile_ms"], 99), "ms"),
                row(
                    f"LTV by channel via profiles, {rows:,} events",
                    out["ltv"]["view"],
                    "ms",
                    out["ltv"]["raw"],
                    "same question, raw table",
                ),
                batch,
                row(f"index bytes per identifier ({index['identifiers']:,})", index["per_identifier"], "B"),
                row("index bytes per membership", index["per_membership"], "B"),
            ]
        return results
