"""analyst: query times of the README's analyst queries on a large events table (10,000,000 events in full mode).

Runs in a child process with its own embedded store (a chDB folder opens in one process only). The events are
generated inside the engine (`INSERT ... SELECT FROM numbers(N)`): 200,000 people with 1-3 cookies each, page
views, product views, cart adds and orders over 90 days, and their identities. Each query runs through the
views analysts use (`events` with FINAL, `events_with_profile`, `profiles`); the baseline is the same question
asked of the raw `events_store` table without deduplication or profile resolution, in the same run: the ratio is
the price of exactly-once, always-current views.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.core import Result, register
from bench.stack import self_peak_rss_mb

README = Path(__file__).resolve().parents[2] / "README.md"
PEOPLE = 200_000

FILL_EVENTS = """
INSERT INTO {db}.events_store (message_id, channel, source_id, type, event, anonymous_id, user_id, profile_id,
                               identity_key, timestamp, received_at, properties, context, traits)
SELECT toString(number) AS message_id,
       ['online', 'online', 'mobile', 'offline'][number % 4 + 1] AS channel, 'bench' AS source_id,
       if(number % 5 = 0, 'page', 'track') AS type,
       if(number % 5 = 0, 'Home',
          ['Product Viewed', 'Product Viewed', 'Product Added', 'Order Completed'][number % 4 + 1]) AS event,
       concat('c', toString(cityHash64(number) % {people} * 3 + number % 3)) AS anonymous_id, '' AS user_id,
       '' AS profile_id, concat('anonymous_id:', anonymous_id) AS identity_key,
       now64(3) - toIntervalSecond(7776000) + toIntervalSecond(number * 7776000 / {n}) AS timestamp,
       timestamp AS received_at,
       concat('{"revenue":', toString(number % 200), ',"category":"c', toString(number % 20), '"}') AS properties,
       '{}' AS context, '{}' AS traits
FROM numbers({n})
"""
FILL_IDENTITIES = """
INSERT INTO {db}.identities_store
SELECT 'anonymous_id', concat('c', toString(number)), concat('p', toString(intDiv(number, 3))),
       toDateTime64('2026-01-01 00:00:00', 3, 'UTC'), now64(3), 1
FROM numbers({ids})
"""
# The same questions on the raw table: no FINAL, no identity resolution (profile = cookie / 3, precomputed).
RAW = {
    "funnel": """SELECT countIf(steps >= 1), countIf(steps >= 2), countIf(steps >= 3) FROM (
        SELECT identity_key, windowFunnel(7 * 86400)(toDateTime(timestamp), event = 'Product Viewed',
            event = 'Product Added', event = 'Order Completed') AS steps
        FROM {db}.events_store WHERE type = 'track' AND timestamp >= now() - INTERVAL 30 DAY GROUP BY identity_key)""",
    "retention": """SELECT cohort, weeks_later, uniqExact(identity_key) FROM (
        SELECT identity_key, toStartOfWeek(timestamp) AS week,
               min(toStartOfWeek(timestamp)) OVER (PARTITION BY identity_key) AS cohort,
               dateDiff('week', cohort, week) AS weeks_later FROM {db}.events_store) GROUP BY cohort, weeks_later""",
    "ltv": """SELECT channel, count(), sum(JSONExtractFloat(properties, 'revenue')) FROM {db}.events_store
        WHERE event = 'Order Completed' GROUP BY channel""",
    "overlap": "SELECT count() FROM {db}.audience_members",
    "count by event": "SELECT event, count() FROM {db}.events_store GROUP BY event",
}
VIEWS = {"count by event": "SELECT event, count() FROM cdp.events GROUP BY event"}


def readme_queries() -> dict[str, str]:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)
    names = ["funnel", "retention", "ltv", "overlap"]
    return {**dict(zip(names, blocks, strict=False)), **VIEWS}


def child(n: int, path: str) -> dict[str, Any]:
    from sinks.clickhouse import ClickHouse
    from sinks.migrate import migrate

    ch = ClickHouse(f"chdb://{path}", "cdp")
    migrate(ch)
    db = ch.database
    t0 = time.perf_counter()
    for start in range(0, n, 2_000_000):  # in slices: bounded memory per insert
        size = min(2_000_000, n - start)
        ch.command(
            FILL_EVENTS.replace("{db}", db)
            .replace("{n}", str(n))
            .replace("{people}", str(PEOPLE))
            .replace("FROM numbers({n})".replace("{n}", str(n)), f"FROM numbers({start}, {size})")
        )
    ch.command(FILL_IDENTITIES.replace("{db}", db).replace("{ids}", str(PEOPLE * 3)))
    fill_s = time.perf_counter() - t0
    out: dict[str, Any] = {"fill_s": fill_s, "rows": ch.scalar(f"SELECT count() FROM {db}.events_store")}
    for name, sql in readme_queries().items():
        times = {}
        for label, query in (("view", sql), ("raw", RAW[name].replace("{db}", db))):
            best = None
            for _ in range(2):  # best of two: the first run also warms the page cache
                t = time.perf_counter()
                ch.query(query)
                elapsed = (time.perf_counter() - t) * 1000
                best = elapsed if best is None else min(best, elapsed)
            times[label] = best
        out[name] = times
    out["rss_mb"] = self_peak_rss_mb()
    return out


@register
class AnalystStage:
    name = "analyst"
    description = "README analyst queries through the views on N generated events, beside the raw table"

    def run(self, ctx: Context) -> list[Result]:
        n = int(getattr(ctx.mode, "analyst_events", 10_000_000 if ctx.mode.name == "full" else 1_000_000))
        ctx.log(f"analyst: generating {n:,} events in a child process")
        with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
            mp = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=mp) as pool:
                out = pool.submit(child, n, str(Path(tmp) / "ch")).result()
        ctx.log(f"analyst: {out['rows']:,} events generated in {out['fill_s']:.1f} s")
        peaks = {"chdb child": round(out["rss_mb"], 1)}
        return [
            Result(
                self.name,
                f"{name} on {out['rows']:,} events (view)",
                out[name]["view"],
                "ms",
                out[name]["raw"],
                "same question, raw table",
                lower_is_better=True,
                peak_rss_mb=peaks,
            )
            for name in readme_queries()
        ]
