"""POST /v1/sql: at most CDP_SQL_CONCURRENCY statements at once, 429 naming the limit, errors as 400.

The engine is replaced by a fake whose calls block until released, so the slots can be watched exactly; the
engine's own behaviour (guard, limits) is tested in tests/sinks and end to end in tests/e2e.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.deps import Services
from schemas.settings import Settings
from sinks.analyst import SqlLimitExceeded
from sinks.sql_guard import SqlRefused
from streams.topics import topics_for

TOKEN = "t-analyst"


class BlockingEngine:
    """Answers each query when ``release`` is set; counts the calls running at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def run(self, query: str) -> tuple[list[str], list[list[Any]]]:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if query == "refused":
                raise SqlRefused("table function file() (allowed: numbers)")
            if query == "over":
                raise SqlLimitExceeded("CDP_SQL_MAX_MEMORY_MB=1024", "Code: 241. memory limit")
            self.release.wait(10)
            return ["q"], [[query]]
        finally:
            with self._lock:
                self.running -= 1


def app_with(engine: BlockingEngine, tmp_path: Path, concurrency: int) -> Any:
    settings = Settings(
        data_dir=tmp_path, admin_token="t-admin", analyst_token=TOKEN, sql_concurrency=concurrency, sql_queue_s=0.2
    )
    services = Services(settings=settings, topics=topics_for(settings))
    services.analyst = engine  # type: ignore[assignment]
    return create_app(services)


async def post(client: httpx.AsyncClient, query: str) -> httpx.Response:
    return await client.post("/v1/sql", json={"query": query}, headers={"Authorization": f"Bearer {TOKEN}"})


def test_a_query_over_the_concurrency_limit_gets_429_naming_it(tmp_path: Path) -> None:
    engine = BlockingEngine()
    app = app_with(engine, tmp_path, concurrency=2)

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cdp") as client:
            first = [asyncio.create_task(post(client, f"q{i}")) for i in range(2)]
            while engine.running < 2:
                await asyncio.sleep(0.01)
            third = await post(client, "q2")  # both slots taken: waits sql_queue_s, then 429
            engine.release.set()
            return [*(await asyncio.gather(*first)), third]

    one, two, third = asyncio.run(scenario())
    assert (one.status_code, two.status_code) == (200, 200)
    assert third.status_code == 429
    assert "CDP_SQL_CONCURRENCY=2" in third.json()["error"]
    assert third.headers["retry-after"] == "1"
    assert engine.most == 2


def test_a_slot_is_held_until_the_engine_call_ends_even_if_the_caller_left(tmp_path: Path) -> None:
    engine = BlockingEngine()
    app = app_with(engine, tmp_path, concurrency=1)

    async def scenario() -> tuple[int, int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cdp") as client:
            gone = asyncio.create_task(post(client, "slow"))
            while engine.running < 1:
                await asyncio.sleep(0.01)
            gone.cancel()  # the caller hangs up; the engine call goes on
            await asyncio.sleep(0.05)
            refused = (await post(client, "next")).status_code
            engine.release.set()
            while engine.running:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            return refused, (await post(client, "after")).status_code

    assert asyncio.run(scenario()) == (429, 200)
    assert engine.most == 1


@pytest.mark.parametrize(
    "query,named",
    [("refused", "query refused: table function file()"), ("over", "CDP_SQL_MAX_MEMORY_MB=1024")],
)
def test_refusals_and_limits_answer_400_naming_them(tmp_path: Path, query: str, named: str) -> None:
    app = app_with(BlockingEngine(), tmp_path, concurrency=1)

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cdp") as client:
            return await post(client, query)

    r = asyncio.run(scenario())
    assert r.status_code == 400
    assert named in r.json()["error"]
