"""freshness: p50/p99 from POST /v1/track to the row visible in `cdp.events`, at a fixed offered rate.

A background load process posts generator events to /v1/track at a fixed rate; meanwhile this process posts
probe events with marker messageIds at a fixed rate and polls /v1/sql for them. Latency runs from the start of
the probe's POST to the answer of the first query that sees the row (an upper bound; the poll interval is the
resolution). No raw baseline: there is no single raw component to compare the whole path with.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time
from typing import Any

import httpx

from bench.context import Context
from bench.core import Result, StageError, percentile, register
from bench.load import Window, start_time, track_load

POLL_S = 0.05
VISIBLE_TIMEOUT_S = 60.0


async def _probe(url: str, write_key: str, admin_token: str, rate: float, window: Window, tag: str) -> dict[str, Any]:
    pending: dict[str, float] = {}
    latencies: list[float] = []
    counts = {"sent": 0, "accepted": 0}
    sending = True

    async with httpx.AsyncClient(timeout=30) as http:

        async def sender() -> None:
            nonlocal sending
            i = 0
            try:
                while True:
                    scheduled = window.start_at + i / rate
                    if scheduled >= window.end:
                        break
                    await asyncio.sleep(max(0.0, scheduled - time.time()))
                    mid = f"probe-{tag}-{i}"
                    event = {
                        "anonymousId": f"probe-{tag}-{i}",
                        "event": "Bench Probe",
                        "messageId": mid,
                        "properties": {"probe": i},
                    }
                    t0 = time.perf_counter()
                    r = await http.post(f"{url}/v1/track", json=event, auth=(write_key, ""))
                    if window.contains(scheduled):
                        counts["sent"] += 1
                        if r.status_code == 200:
                            counts["accepted"] += 1
                            pending[mid] = t0
                    i += 1
            finally:
                sending = False

        async def poller() -> None:
            deadline: float | None = None
            while sending or pending:
                if not sending:
                    deadline = deadline or time.monotonic() + VISIBLE_TIMEOUT_S
                    if time.monotonic() > deadline:
                        break
                if pending:
                    ids = ",".join(f"'{m}'" for m in pending)
                    query = f"SELECT message_id FROM cdp.events WHERE message_id IN ({ids})"
                    r = await http.post(
                        f"{url}/v1/sql", headers={"Authorization": f"Bearer {admin_token}"}, json={"query": query}
                    )
                    now = time.perf_counter()
                    if r.status_code != 200:
                        raise StageError(f"/v1/sql {r.status_code}: {r.text[:300]}")
                    for (mid,) in r.json()["rows"]:
                        t0 = pending.pop(mid, None)
                        if t0 is not None:
                            latencies.append((now - t0) * 1000)
                await asyncio.sleep(POLL_S)

        await asyncio.gather(sender(), poller())
    return {"latencies_ms": latencies, "counts": counts, "never_visible": len(pending)}


@register
class FreshnessStage:
    name = "freshness"
    description = "p50/p99 from POST /v1/track to the row visible in cdp.events, at a fixed offered rate"

    def run(self, ctx: Context) -> list[Result]:
        m = ctx.mode
        cdp = ctx.pipeline()
        key = cdp.write_keys.get("online")
        if not key:
            raise StageError("no write key for the online channel")
        watch = ctx.watch(cdp=cdp.pid)
        window = Window(start_time(), 2.0, m.freshness_s)
        ctx.log(
            f"freshness: {m.freshness_background_rate:.0f} events/s background + "
            f"{m.freshness_probe_rate:.0f} probes/s for {m.freshness_s:.0f} s"
        )
        mp = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=mp) as pool:
            background = pool.submit(
                track_load,
                url=cdp.url,
                write_key=key,
                window=window,
                rate=m.freshness_background_rate,
                seed=m.seed + 17,
                worker=0,
                tag=f"f{ctx.tag}",
                first_person=70_000_000,
            )
            probe = asyncio.run(_probe(cdp.url, key, cdp.admin_token, m.freshness_probe_rate, window, ctx.tag))
            load = background.result()
        peaks = watch.read()
        peaks["load x1"] = round(load["rss_mb"], 1)
        lat = probe["latencies_ms"]
        if not lat:
            raise StageError(f"no probe became visible ({probe['counts']}, {probe['never_visible']} pending)")
        bg = load["counts"]
        details = {
            "background_offered_per_s": bg.get("offered", 0) / m.freshness_s,
            "background_achieved_per_s": bg.get("200", 0) / m.freshness_s,
            "probe_offered_per_s": probe["counts"]["sent"] / m.freshness_s,
            "probes_accepted": probe["counts"]["accepted"],
            "probes_visible": len(lat),
            "probes_never_visible": probe["never_visible"],
            "poll_interval_ms": POLL_S * 1000,
            "max_ms": max(lat),
        }
        offered = (bg.get("offered", 0) + probe["counts"]["sent"]) / m.freshness_s
        achieved = (bg.get("200", 0) + probe["counts"]["accepted"]) / m.freshness_s
        rate = f"offered {offered:,.0f}/s, achieved {achieved:,.0f}/s"
        return [
            Result(
                self.name,
                f"POST -> visible in cdp.events p50 ({rate})",
                percentile(lat, 50),
                "ms",
                lower_is_better=True,
                peak_rss_mb=peaks,
                details=details,
            ),
            Result(
                self.name,
                f"POST -> visible in cdp.events p99 ({rate})",
                percentile(lat, 99),
                "ms",
                lower_is_better=True,
                peak_rss_mb=peaks,
                details=details,
            ),
        ]
