"""lookup: GET /v1/lookup p50/p99 at a fixed offered rate, with a large serving index.

The index is filled the way production fills it: audience-change records (1,000,000 in full mode) are produced
to the pipeline's `cdp.audience.changes` topic and the running process follows them. Load comes from separate
processes over keep-alive connections with a minimal HTTP/1.1 client (so the measuring client does not starve
the server); each request's latency runs from its *scheduled* send time, so a stalled server cannot hide
queued requests (no coordinated omission). Lookups hit known members and, one in ten, unknown identifiers.

Baseline, same run, same load: a raw ASGI app under uvicorn (httptools) answering a constant JSON body: the
floor of Python HTTP serving on this machine, without any index.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import random
import re
import time
from typing import Any

import orjson

from bench.context import Context
from bench.core import Result, StageError, percentile, register
from bench.stack import free_port, produce_all, self_peak_rss_mb

AUDIENCES = 5
_CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)


def members(mode: Any) -> int:
    return int(getattr(mode, "lookup_members", 1_000_000 if mode.name == "full" else 200_000))


def _key(i: int) -> str:
    return f"anonymous_id:lk-{i}"


async def _connection(
    host: str, port: int, token: str, times: list[float], ids: list[int], out: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for t_sched, i in zip(times, ids, strict=True):
            delay = t_sched - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            path = f"/v1/lookup/anonymous_id/lk-{i}"
            writer.write(f"GET {path} HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            match = _CONTENT_LENGTH.search(head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            out.append((time.perf_counter() - t_sched) * 1000)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(int(head[9:12]))
    finally:
        writer.close()


def load_process(
    host: str,
    port: int,
    token: str,
    rate: float,
    start_at: float,
    duration: float,
    connections: int,
    id_space: int,
    seed: int,
) -> dict[str, Any]:
    """One load process: `rate` requests/s spread over `connections` keep-alive connections."""
    rng = random.Random(seed)
    n = int(rate * duration)
    per_conn: list[tuple[list[float], list[int]]] = [([], []) for _ in range(connections)]
    base = time.perf_counter() + (start_at - time.time())
    for k in range(n):
        times, ids = per_conn[k % connections]
        times.append(base + k / rate)
        ids.append(rng.randrange(id_space) if rng.random() < 0.9 else id_space + rng.randrange(10**6))
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> None:
        await asyncio.gather(*(_connection(host, port, token, t, i, latencies, errors) for t, i in per_conn))

    asyncio.run(main())
    return {
        "latencies_ms": latencies,
        "errors": errors,
        "offered": n,
        "rss_mb": self_peak_rss_mb(),
    }


def _constant_app_server(port: int) -> None:
    import uvicorn

    body = orjson.dumps({"audiences": ["aud_0", "aud_1"]})

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False, http="httptools", lifespan="off")


def _run_load(host: str, port: int, token: str, mode: Any, id_space: int, processes: int) -> dict[str, Any]:
    rate = float(getattr(mode, "lookup_rate", 2000.0))
    duration = float(getattr(mode, "lookup_s", 20.0 if mode.name == "full" else 8.0))
    connections = int(getattr(mode, "lookup_connections", 16))
    start_at = time.time() + 2.0
    mp = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=processes, mp_context=mp) as pool:
        futures = [
            pool.submit(
                load_process,
                host,
                port,
                token,
                rate / processes,
                start_at,
                duration,
                connections // processes,
                id_space,
                mode.seed + p,
            )
            for p in range(processes)
        ]
        parts = [f.result() for f in futures]
    lat = [x for p in parts for x in p["latencies_ms"]]
    return {
        "latencies_ms": lat,
        "errors": [e for p in parts for e in p["errors"]],
        "rate": rate,
        "duration": duration,
        "offered": sum(p["offered"] for p in parts),
        "load_rss_mb": max(p["rss_mb"] for p in parts),
    }


@register
class LookupStage:
    name = "lookup"
    description = "GET /v1/lookup p50/p99 at a fixed rate with a large serving index, beside raw uvicorn"

    def run(self, ctx: Context) -> list[Result]:
        m = ctx.mode
        cdp = ctx.pipeline()
        token = cdp.admin_token
        n = members(m)
        ctx.log(f"lookup: producing {n:,} audience memberships into {cdp.topic_prefix}.audience.changes")
        topic = f"{cdp.topic_prefix}.audience.changes"
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        produce_all(
            cdp.bootstrap,
            (
                (
                    topic,
                    f"aud_bench{i % AUDIENCES}|{_key(i)}".encode(),
                    orjson.dumps(
                        {
                            "audience_id": f"aud_bench{i % AUDIENCES}",
                            "member": _key(i),
                            "member_type": "anonymous_id",
                            "status": "entered",
                            "changed_at": now,
                        }
                    ),
                )
                for i in range(n)
            ),
        )
        import httpx

        started = time.monotonic()
        last = f"{cdp.url}/v1/lookup/anonymous_id/lk-{n - 1}"
        while time.monotonic() - started < 300:
            r = httpx.get(last, headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 200 and r.json()["audiences"]:
                break
            time.sleep(0.5)
        else:
            raise StageError("the serving index did not catch up with the produced memberships in 300 s")
        ctx.log(f"lookup: index caught up in {time.monotonic() - started:.1f} s")
        host, port = cdp.url.removeprefix("http://").split(":")
        processes = int(getattr(m, "lookup_processes", 2))
        watch = ctx.watch(cdp=cdp.pid)
        measured = _run_load(host, int(port), token, m, n, processes)
        peaks = watch.read()
        peaks[f"load x{processes}"] = round(measured["load_rss_mb"], 1)

        base_port = free_port()
        server = multiprocessing.get_context("spawn").Process(
            target=_constant_app_server, args=(base_port,), daemon=True
        )
        server.start()
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"http://127.0.0.1:{base_port}/").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            baseline = _run_load("127.0.0.1", base_port, token, m, n, processes)
        finally:
            server.terminate()
            server.join(5)
        lat, base = measured["latencies_ms"], baseline["latencies_ms"]
        if not lat:
            raise StageError("no lookup answered")
        achieved = len(lat) / measured["duration"]
        label = f"{n:,} members, offered {measured['rate']:,.0f}/s, achieved {achieved:,.0f}/s"
        details = {
            "members": n,
            "errors": len(measured["errors"]),
            "requests": len(lat),
            "offered": measured["offered"],
            "max_ms": max(lat),
            "baseline_p50_ms": percentile(base, 50),
            "baseline_p99_ms": percentile(base, 99),
        }
        return [
            Result(
                self.name,
                f"lookup p50 ({label})",
                percentile(lat, 50),
                "ms",
                percentile(base, 50),
                "raw uvicorn constant answer",
                lower_is_better=True,
                peak_rss_mb=peaks,
                details=details,
            ),
            Result(
                self.name,
                f"lookup p99 ({label})",
                percentile(lat, 99),
                "ms",
                percentile(base, 99),
                "raw uvicorn constant answer",
                lower_is_better=True,
                peak_rss_mb=peaks,
                details=details,
            ),
        ]
