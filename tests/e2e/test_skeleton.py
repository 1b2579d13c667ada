"""The whole pipeline for real: HTTP -> collector -> Kafka -> Faust -> sink -> chDB -> SQL over HTTP."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import httpx
import orjson
import pytest

from tests.support.service import ROOT, CdpProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cdp(kafka, tmp_path_factory):
    """One stack for the tests that only read or post (a start costs seconds)."""
    service = CdpProcess(kafka.bootstrap, tmp_path_factory.mktemp("skeleton") / "data", f"t{uuid.uuid4().hex[:10]}")
    service.start()
    service.wait_ready()
    yield service
    assert service.stop() == 0, service.output()[-3000:]


def test_track_event_lands_in_clickhouse(cdp: CdpProcess) -> None:
    mid = str(uuid.uuid4())
    r = httpx.post(
        f"{cdp.url}/v1/track",
        auth=(cdp.write_keys["online"], ""),
        json={"messageId": mid, "anonymousId": "anon-1", "event": "Signed Up", "properties": {"plan": "pro"}},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    cdp.wait_for(f"SELECT count() FROM cdp.events WHERE message_id = '{mid}'", 1, timeout=15)
    row = cdp.sql(
        f"SELECT channel, type, event, anonymous_id, JSONExtractString(properties, 'plan'), "
        f"profile_id != '' FROM cdp.events WHERE message_id = '{mid}'"
    )[0]
    assert row == ["online", "track", "Signed Up", "anon-1", "pro", True]
    # Every stage reports on /metrics: the collector, the stitcher, the sinks (README "Metrics").
    scraped = httpx.get(f"{cdp.url}/metrics").text
    for series in ("cdp_events_accepted_total", "cdp_stitch_events_total", "cdp_sink_rows_total{table="):
        assert series in scraped, series
    assert "cdp_sink_insert_seconds_count" in scraped


def test_unknown_write_key_is_refused(cdp: CdpProcess) -> None:
    r = httpx.post(f"{cdp.url}/v1/track", auth=("wk_nope", ""), json={"anonymousId": "a", "event": "x"})
    assert r.status_code == 401
    assert "write key" in r.json()["error"]


def test_sigterm_after_burst_loses_nothing(kafka, data_dir, topic_prefix) -> None:
    """10,000 events acknowledged, SIGTERM at once, restart: exactly 10,000 rows, none lost, none doubled."""
    service = CdpProcess(kafka.bootstrap, data_dir, topic_prefix).start()
    service.wait_ready()
    key = service.write_keys["mobile"]
    run_id = uuid.uuid4().hex[:8]

    async def burst() -> int:
        async with httpx.AsyncClient(auth=(key, ""), timeout=30) as client:

            async def post(i: int) -> int:
                batch = [
                    {
                        "type": "track",
                        "event": "Burst",
                        "anonymousId": f"a-{run_id}-{i}-{j % 7}",
                        "messageId": f"{run_id}-{i}-{j}",
                    }
                    for j in range(100)
                ]
                r = await client.post(f"{service.url}/v1/batch", json={"batch": batch})
                assert r.status_code == 200, r.text
                return r.json()["accepted"]

            return sum(await asyncio.gather(*(post(i) for i in range(100))))

    assert asyncio.run(burst()) == 10_000
    assert service.stop() == 0, service.output()[-3000:]

    again = CdpProcess(kafka.bootstrap, data_dir, topic_prefix).start()
    try:
        again.wait_ready()
        query = f"SELECT count() FROM cdp.events WHERE message_id LIKE '{run_id}-%'"
        again.wait_for(query, 10_000, timeout=120)
        distinct = f"SELECT uniqExact(message_id) FROM cdp.events_store WHERE message_id LIKE '{run_id}-%'"
        assert again.scalar(distinct) == 10_000
    finally:
        assert again.stop() == 0, again.output()[-3000:]


def test_cdp_api_beside_cdp_run_on_one_embedded_store_says_so_in_one_line(cdp: CdpProcess) -> None:
    from bench.stack import free_port

    run_file = orjson.loads((cdp.data_dir / "run.json").read_bytes())  # where the CLI finds this stack
    assert (run_file["http_port"], run_file["kafka_bootstrap"]) == (cdp.port, cdp.env["CDP_KAFKA_BOOTSTRAP"])
    env = {**cdp.env, "CDP_HTTP_PORT": str(free_port())}  # the same data folder, so the same chDB store
    proc = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "api"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("cdp: the embedded ClickHouse store"), proc.stderr
    assert "is open in another process" in proc.stderr
