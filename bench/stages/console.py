"""console: how long each console page waits for its answers with N generated events stored (200,000 in quick
mode, 1,000,000 in full mode: the console's target is stated at that size; `--set console_events=1000000`).

A child process fills a chDB store with the generator's events as the stitcher would have written them (each
with its true profile id) and their identifiers; `cdp run` then serves that store, and two audiences are created
through the API. Each page's figure is the time of the API calls the page makes when it opens, one after the
other as the page does (sources: the source list; live events: sources and the live tail; profiles: a profile
by e-mail, its merges and the audience names; audiences: the list and an audience's history; pipeline: the
broker figures; the SQL page asks nothing as it opens), and two clicks (an audience's size preview, the SQL
page's default query): ``console_passes`` passes of ``console_rounds`` rounds each, the
median of the passes' medians (each pass's median, p95 and the slowest in the details). The baseline is
GET /healthz on the same server: the price of one round trip.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.context import Context
from bench.core import Result, percentile, register
from bench.data import PREVIEW, heavy_rule

EVENTS_PER_PERSON = 40  # about what one generated person sends
SQL = "SELECT type, event, count() AS events FROM cdp.events GROUP BY type, event ORDER BY events DESC LIMIT 20"


def fill(n: int, folder: str) -> dict[str, Any]:
    """Child process: ``n`` stitched events and their identifiers into the chDB store at ``folder``."""
    from bench.data import stitched_record
    from bench.generator import GeneratorConfig, generate_events, strip_truth, truth_identifiers
    from sinks.clickhouse import ClickHouse
    from sinks.migrate import migrate

    ch = ClickHouse(f"chdb://{folder}", "cdp")
    migrate(ch)
    start_ms = (int(time.time()) // 86_400 - 29) * 86_400_000
    cfg = GeneratorConfig(people=max(1, n // EVENTS_PER_PERSON * 2), seed=7, start_ms=start_ms, days=30)
    t0 = time.perf_counter()
    batch: list[bytes] = []
    owners: dict[str, str] = {}
    for event in itertools.islice(generate_events(cfg), n):
        clean, truth = strip_truth(event)
        assert truth is not None
        profile = f"profile-{truth['person']}"
        for key, _ in truth_identifiers(event):
            owners.setdefault(key, profile)
        batch.append(stitched_record(clean, truth["channel"], profile)[1])
        if len(batch) >= 50_000:
            ch.insert_json_lines("events_landing", batch)
            batch = []
    if batch:
        ch.insert_json_lines("events_landing", batch)
    now = datetime.now(UTC)
    rows = [(*k.split(":", 1), p, now, now, 1) for k, p in owners.items()]
    columns = ("id_type", "id_value", "profile_id", "first_seen", "updated_at", "version")
    for i in range(0, len(rows), 100_000):
        ch.insert("identities_store", rows[i : i + 100_000], columns)
    # The busiest people first: their profile pages are the slowest ones.
    _, emails = ch.query(
        f"SELECT i.id_value FROM {ch.database}.identities AS i INNER JOIN (SELECT profile_id, count() AS n "
        f"FROM {ch.database}.events GROUP BY profile_id ORDER BY n DESC LIMIT 20) AS top USING profile_id "
        "WHERE i.id_type = 'email' LIMIT 10"
    )
    out = {
        "events": int(ch.scalar(f"SELECT count() FROM {ch.database}.events_store")),
        "identifiers": len(rows),
        "emails": [e[0] for e in emails],
        "fill_s": time.perf_counter() - t0,
    }
    ch.close()
    return out


def timed(calls: list[Callable[[], httpx.Response]]) -> float:
    """Milliseconds for the calls one after the other; each must answer 2xx."""
    t = time.perf_counter()
    for call in calls:
        r = call()
        assert r.is_success, (r.request.url, r.status_code, r.text[:300])
    return (time.perf_counter() - t) * 1000


@register
class ConsoleStage:
    name = "console"
    description = "each console page's API answers with N events stored, beside one /healthz round trip"

    def run(self, ctx: Context) -> list[Result]:
        n = ctx.mode.console_events
        rounds = ctx.mode.console_rounds
        data_dir = ctx.workdir / "console"
        ctx.log(f"console: generating {n:,} events into {data_dir}")
        mp = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=mp) as pool:
            filled = pool.submit(fill, n, str((data_dir / "clickhouse").resolve())).result()
        ctx.log(
            f"console: {filled['events']:,} events, {filled['identifiers']:,} identifiers in {filled['fill_s']:.0f} s"
        )
        proc = ctx.start_cdp("run", "console", ctx.prefix("console"))
        headers = {"Authorization": f"Bearer {proc.admin_token}"}
        with httpx.Client(base_url=proc.url, headers=headers, timeout=60) as http:
            audiences = [
                http.post("/v1/audiences", json={**PREVIEW, "name": "Buyers"}).json()["id"],
                http.post("/v1/audiences", json={"name": "Heavy", "scope": "profile", "rule": heavy_rule()}).json()[
                    "id"
                ],
            ]
            time.sleep(5)  # the evaluator's first round over the store
            emails = filled["emails"] or ["nobody@example.com"]
            profile = http.get(f"/v1/profiles/email/{emails[0]}").json()
            pages: dict[str, list[Callable[[], httpx.Response]]] = {
                "page itself (HTML, CSS, JS)": [
                    lambda: http.get("/console"),
                    lambda: http.get("/console/static/console.css"),
                    lambda: http.get("/console/static/console.js"),
                    lambda: http.get("/v1/console/session"),
                ],
                "sources": [lambda: http.get("/v1/sources")],
                "live events": [lambda: http.get("/v1/sources"), lambda: http.get("/v1/console/live")],
                "profiles": [
                    lambda: http.get(f"/v1/profiles/email/{emails[0]}"),
                    lambda: http.get(f"/v1/console/merges/{profile['profile_id']}"),
                    lambda: http.get("/v1/audiences"),
                ],
                "audiences": [
                    lambda: http.get("/v1/audiences"),
                    lambda: http.get(f"/v1/audiences/{audiences[0]}/history"),
                ],
                "pipeline": [lambda: http.get("/v1/console/pipeline")],
                # What a click does, beyond opening a page:
                "audience size preview (click)": [lambda: http.post("/v1/audiences/preview", json=PREVIEW)],
                "SQL page's query (click)": [lambda: http.post("/v1/sql", json={"query": SQL})],
            }
            first_live = timed(pages["live events"])
            passes = ctx.mode.console_passes
            baseline = [timed([lambda: http.get("/healthz")]) for _ in range(rounds)]
            medians: dict[str, list[float]] = {page: [] for page in pages}
            every: dict[str, list[float]] = {page: [] for page in pages}
            for _ in range(passes):  # passes one after the other: the spread says how steady the figure is
                for page, calls in pages.items():
                    times = [timed(calls) for _ in range(rounds)]
                    medians[page].append(statistics.median(times))
                    every[page] += times
            results = [
                Result(
                    self.name,
                    f"{page} on {filled['events']:,} events",
                    statistics.median(medians[page]),
                    "ms",
                    statistics.median(baseline),
                    "GET /healthz",
                    lower_is_better=True,
                    details={
                        "pass_medians_ms": [round(m, 1) for m in medians[page]],
                        "p95_ms": percentile(every[page], 95),
                        "max_ms": max(every[page]),
                        "calls": len(pages[page]),
                        **({"first_look_ms": first_live} if page == "live events" else {}),
                    },
                )
                for page in pages
            ]
        ctx.stop_cdp(proc)
        return results
