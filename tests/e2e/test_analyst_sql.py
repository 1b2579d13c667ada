"""Analyst SQL against a running `cdp run`: a memory-hungry query is stopped with the limit named while the
pipeline goes on accepting and stitching events; escapes are refused; `cdp sql` goes through the analyst token.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from bench.stack import peak_rss_mb, reset_peak_rss
from schemas.settings import Settings
from tests.support.service import ROOT, CdpProcess

pytestmark = pytest.mark.e2e
HUNGRY = "SELECT length(groupArray(number)) FROM numbers(300000000)"  # several GB without a limit
MEMORY_LIMIT_MB = Settings.model_fields["sql_max_memory_mb"].default


@pytest.fixture(scope="module")
def cdp(shared_cdp: CdpProcess) -> CdpProcess:
    return shared_cdp


def sql(cdp: CdpProcess, query: str, token: str, timeout: float = 90) -> httpx.Response:
    return httpx.post(
        f"{cdp.url}/v1/sql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
    )


class Sender(threading.Thread):
    """Posts identify events (one person each: an anonymous id and a user id to stitch) until stopped, and
    keeps when each answer came."""

    def __init__(self, cdp: CdpProcess, run: str) -> None:
        super().__init__(daemon=True)
        self.cdp, self.run_id = cdp, run
        self.stop = threading.Event()
        self.answers: list[tuple[float, int]] = []
        self.people = 0

    def run(self) -> None:
        with httpx.Client(auth=(self.cdp.write_keys["online"], ""), timeout=30) as client:
            while not self.stop.is_set():
                batch = [self.person(self.people + i) for i in range(10)]
                r = client.post(f"{self.cdp.url}/v1/batch", json={"batch": batch})
                self.answers.append((time.monotonic(), r.status_code))
                if r.status_code == 200:
                    self.people += len(batch)
                time.sleep(0.02)

    def person(self, i: int) -> dict[str, Any]:
        return {
            "type": "identify",
            "anonymousId": f"{self.run_id}-a{i}",
            "userId": f"{self.run_id}-u{i}",
            "messageId": f"{self.run_id}-{i}",
        }


def test_memory_hungry_query_is_stopped_while_events_land_and_stitch(cdp: CdpProcess) -> None:
    run = uuid.uuid4().hex[:8]
    assert cdp.pid is not None
    reset_peak_rss(cdp.pid)
    sender = Sender(cdp, run)
    sender.start()
    while len(sender.answers) < 3:
        time.sleep(0.05)
    started = time.monotonic()
    r = sql(cdp, HUNGRY, cdp.analyst_token)
    ended = time.monotonic()
    time.sleep(0.5)
    sender.stop.set()
    sender.join(30)

    assert r.status_code == 400, r.text
    assert f"CDP_SQL_MAX_MEMORY_MB={MEMORY_LIMIT_MB}" in r.json()["error"]
    during = [status for t, status in sender.answers if started <= t <= ended]
    assert len(during) >= 5, f"only {len(during)} batches answered while the query ran ({ended - started:.1f} s)"
    assert {status for _, status in sender.answers} == {200}
    peak = peak_rss_mb(cdp.pid)
    assert peak is not None and peak < MEMORY_LIMIT_MB + 2048, f"peak RSS {peak:.0f} MiB"

    n = sender.people
    cdp.wait_for(f"SELECT count() FROM cdp.events WHERE message_id LIKE '{run}-%'", n, timeout=90)
    # stitched: each person's anonymous id and user id hold one and the same profile
    query = (
        "SELECT countIf(profiles = 1) FROM (SELECT uniqExact(profile_id) AS profiles FROM cdp.identities "
        f"WHERE id_value LIKE '{run}-%' GROUP BY replaceRegexpOne(id_value, '-[au]', '-'))"
    )
    cdp.wait_for(query, n, timeout=90)


def test_escapes_are_refused_over_http(cdp: CdpProcess) -> None:
    token_file = cdp.data_dir / "admin_token"
    for query, named in [
        ("SELECT * FROM \"file\"('/etc/hostname', 'LineAsString')", "table function file()"),
        (f"SELECT file('{token_file}')", "function file() reads a file"),
        ("SELECT name FROM system.users", "system.users"),
        ("SELECT 1; DROP TABLE cdp.events_store", "Multi-statements"),
    ]:
        r = sql(cdp, query, cdp.analyst_token)
        assert r.status_code == 400, (query, r.text)
        assert named in r.json()["error"], (query, r.text)
    assert sql(cdp, "SELECT count() FROM system.settings", cdp.analyst_token).json()["rows"][0][0] > 0


def test_tokens_on_sql(cdp: CdpProcess) -> None:
    assert sql(cdp, "SELECT 1", cdp.admin_token).status_code == 200
    assert sql(cdp, "SELECT 1", cdp.read_token).status_code == 403
    assert sql(cdp, "SELECT 1", "not-a-token").status_code == 401


def test_cdp_sql_goes_through_the_service_with_the_analyst_token(cdp: CdpProcess) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "sql", "SELECT 40 + 2 AS answer", "--format", "csv"],
        env=cdp.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["answer", "42"]
    assert (cdp.data_dir / "analyst_token").stat().st_mode & 0o777 == 0o600
