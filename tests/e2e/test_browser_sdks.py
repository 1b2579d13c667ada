"""The stock browser SDKs, unchanged, in a real browser against a running cdp: Segment's analytics-next (the
analytics.js snippet) and RudderStack's JavaScript SDK v3, installed from npm by `make browser`.

Each page is served from another origin (``localhost``) than cdp (``127.0.0.1``) and names only cdp's address:
the SDK fetches its settings from cdp, posts there, and cdp must answer its preflights. Each test calls
``page``, ``track`` and ``identify``, then checks that the three events are in ``cdp.events`` under the
anonymous id the SDK keeps in its cookie, and that this cookie and the user id end as one profile. Two tests
send the way browsers send as a page goes away: analytics-next's batches with ``keepalive`` and RudderStack's
``navigator.sendBeacon`` (text/plain, write key in the query).

One `cdp run` and one Chromium for the module; each test its own browser context (cookies) and ids.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.e2e.fixtures import in_list
from tests.support.browser import PAGES, StaticSite, cdp_for_browsers, chromium, sdk_file
from tests.support.service import ROOT, CdpProcess

pytestmark = pytest.mark.e2e

SEGMENT_SDK = "@segment/analytics-next/dist/umd/standalone.js"
RUDDERSTACK_SDK = "@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js"
README = ROOT / "README.md"
RUDDERSTACK_ENCRYPTED = "RS_ENC_v3_"  # RudderStack's v3 cookie values: this prefix, then base64 of JSON


@pytest.fixture(scope="module")
def cdp(kafka, tmp_path_factory) -> Iterator[CdpProcess]:
    with cdp_for_browsers(kafka.bootstrap, tmp_path_factory.mktemp("browser")) as service:
        yield service


@pytest.fixture(scope="module")
def site(cdp: CdpProcess, tmp_path_factory) -> Iterator[StaticSite]:
    site = StaticSite(tmp_path_factory.mktemp("site"))
    # Where Segment's CDN serves the file: the SDK reads its write key from this path, as on a real site.
    site.add(f"analytics.js/v1/{cdp.write_keys['online']}/analytics.min.js", sdk_file(SEGMENT_SDK))
    site.add("rudderstack/rsa.min.js", sdk_file(RUDDERSTACK_SDK))
    site.page("bye.html", "bye.html")
    with site.serving():
        yield site


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


class Visit:
    """One browser context (its own cookies) on one page, recording what it sent to cdp and its console errors."""

    def __init__(self, browser: Browser, cdp_url: str) -> None:
        self.context: BrowserContext = browser.new_context()
        self.sent: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self.errors: list[str] = []
        origin = urlsplit(cdp_url).netloc

        def on_request(request: Any) -> None:
            parts = urlsplit(request.url)
            if parts.netloc == origin:
                self.sent.append(
                    (request.method, parts.path + (f"?{parts.query}" if parts.query else ""), request.headers)
                )

        self.context.on("request", on_request)
        self.page: Page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def paths(self, method: str = "POST") -> set[str]:
        return {path.split("?")[0] for m, path, _ in self.sent if m == method}

    def cookie(self, name: str) -> str | None:
        for c in self.context.cookies():
            if c["name"] == name:
                return unquote(c["value"])
        return None

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Browser, cdp: CdpProcess) -> Iterator[Visit]:
    v = Visit(browser, cdp.url)
    yield v
    v.close()


def wait_events(cdp: CdpProcess, anonymous_id: str, count: int, timeout: float = 60) -> list[list[Any]]:
    """The events of one anonymous id (type, event, user_id, channel), once ``count`` of them have landed."""
    query = f"SELECT type, event, user_id, channel FROM cdp.events WHERE anonymous_id = {in_list([anonymous_id])}"
    deadline = time.monotonic() + timeout
    rows: list[list[Any]] = []
    while time.monotonic() < deadline:
        rows = cdp.sql(query + " ORDER BY timestamp")
        if len(rows) >= count:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"{len(rows)} of {count} events of {anonymous_id} landed: {rows}")


def wait_one_profile(cdp: CdpProcess, anonymous_id: str, user_id: str, timeout: float = 60) -> str:
    """The one profile that the cookie and the user id both belong to (fails if they stay apart)."""
    query = (
        "SELECT groupUniqArray(profile_id), count() FROM cdp.identities WHERE "
        f"(id_type = 'anonymous_id' AND id_value = {in_list([anonymous_id])}) OR "
        f"(id_type = 'user_id' AND id_value = {in_list([user_id])})"
    )
    deadline = time.monotonic() + timeout
    profiles, found = [], 0
    while time.monotonic() < deadline:
        profiles, found = cdp.sql(query)[0]
        if found == 2 and len(profiles) == 1:
            return str(profiles[0])
        time.sleep(0.2)
    raise AssertionError(f"cookie {anonymous_id} and user {user_id}: {found} identifiers in profiles {profiles}")


def check_landed_and_stitched(cdp: CdpProcess, anonymous_id: str | None, user_id: str, visit: Visit) -> None:
    assert anonymous_id, f"no anonymous-id cookie; console errors: {visit.errors}"
    rows = wait_events(cdp, anonymous_id, 3)
    assert sorted(r[0] for r in rows) == ["identify", "page", "track"], rows
    assert {r[3] for r in rows} == {"online"}
    assert [r[1] for r in rows if r[0] == "track"] == ["Product Viewed"]
    assert [r[2] for r in rows if r[0] == "identify"] == [user_id]
    wait_one_profile(cdp, anonymous_id, user_id)


def segment_page(site: StaticSite, cdp: CdpProcess, load_options: dict[str, Any]) -> str:
    key = cdp.write_keys["online"]
    return site.page(
        f"segment-{uuid.uuid4().hex[:8]}.html",
        "segment.html",
        WRITE_KEY=key,
        CDP_URL=cdp.url,
        LOAD_OPTIONS=json.dumps(load_options),
        SDK_URL=f"/analytics.js/v1/{key}/analytics.min.js",
    )


def segment_calls(visit: Visit, user_id: str) -> None:
    visit.page.wait_for_function("() => window.analytics && window.analytics.initialized === true", timeout=30_000)
    visit.page.evaluate(
        """async (user) => {
            await analytics.track("Product Viewed", { sku: "X1", price: 19.99 });
            await analytics.identify(user, { email: user + "@example.com" });
        }""",
        user_id,
    )


def test_segment_snippet_sends_page_track_identify_to_cdp(cdp: CdpProcess, site: StaticSite, visit: Visit) -> None:
    user = f"u-ajs-{uuid.uuid4().hex[:10]}"
    visit.page.goto(segment_page(site, cdp, {}))
    segment_calls(visit, user)
    key = cdp.write_keys["online"]
    assert f"/v1/projects/{key}/settings" in visit.paths("GET"), visit.sent
    assert {"/v1/p", "/v1/t", "/v1/i"} <= visit.paths(), visit.sent
    check_landed_and_stitched(cdp, visit.cookie("ajs_anonymous_id"), user, visit)
    assert visit.cookie("ajs_user_id") == user


def test_segment_batches_sent_with_keepalive_as_the_page_goes_away(
    cdp: CdpProcess, site: StaticSite, visit: Visit
) -> None:
    user = f"u-ajsb-{uuid.uuid4().hex[:10]}"
    # A batch that never fills nor times out within the test: only leaving the page sends it (keepalive fetch).
    batching = {"strategy": "batching", "config": {"size": 100, "timeout": 600_000}}
    visit.page.goto(segment_page(site, cdp, {"integrations": {"Segment.io": {"deliveryStrategy": batching}}}))
    segment_calls(visit, user)
    anonymous_id = visit.cookie("ajs_anonymous_id")
    assert not visit.paths(), visit.sent  # all three events wait in the batch
    visit.page.click("#away")
    visit.page.wait_for_url("**/bye.html")
    # The unload batch goes out after the page is gone, where the browser reports no request: it shows in cdp.
    check_landed_and_stitched(cdp, anonymous_id, user, visit)


def rudderstack_page(site: StaticSite, cdp: CdpProcess, load_options: dict[str, Any]) -> str:
    return site.page(
        f"rudderstack-{uuid.uuid4().hex[:8]}.html",
        "rudderstack.html",
        WRITE_KEY=cdp.write_keys["online"],
        CDP_URL=cdp.url,
        LOAD_OPTIONS=json.dumps(load_options),
        SDK_URL="/rudderstack/rsa.min.js",
    )


def rudderstack_calls(visit: Visit, user_id: str) -> None:
    visit.page.wait_for_function(
        "() => new Promise((resolve) => rudderanalytics.ready(() => resolve(true)))", timeout=30_000
    )
    visit.page.evaluate(
        """(user) => {
            rudderanalytics.track("Product Viewed", { sku: "X1", price: 19.99 });
            rudderanalytics.identify(user, { email: user + "@example.com" });
        }""",
        user_id,
    )


def rudderstack_cookie(visit: Visit, name: str) -> str | None:
    raw = visit.cookie(name)
    if raw is None or not raw.startswith(RUDDERSTACK_ENCRYPTED):
        return raw
    value = json.loads(base64.b64decode(raw[len(RUDDERSTACK_ENCRYPTED) :]))
    return str(value)


def test_rudderstack_v3_sends_page_track_identify_to_cdp(cdp: CdpProcess, site: StaticSite, visit: Visit) -> None:
    user = f"u-rs-{uuid.uuid4().hex[:10]}"
    visit.page.goto(rudderstack_page(site, cdp, {}))
    rudderstack_calls(visit, user)
    assert "/sourceConfig/" in visit.paths("GET"), visit.sent
    anonymous_id = rudderstack_cookie(visit, "rl_anonymous_id")
    check_landed_and_stitched(cdp, anonymous_id, user, visit)
    assert {"/v1/page", "/v1/track", "/v1/identify"} <= visit.paths(), visit.sent
    assert rudderstack_cookie(visit, "rl_user_id") == user


def test_rudderstack_beacon_posts_text_plain_with_the_write_key_in_the_query(
    cdp: CdpProcess, site: StaticSite, visit: Visit
) -> None:
    user = f"u-rsb-{uuid.uuid4().hex[:10]}"
    visit.page.goto(rudderstack_page(site, cdp, {"useBeacon": True, "beaconQueueOptions": {"maxItems": 3}}))
    rudderstack_calls(visit, user)
    anonymous_id = rudderstack_cookie(visit, "rl_anonymous_id")
    check_landed_and_stitched(cdp, anonymous_id, user, visit)
    beacons = [(path, headers) for m, path, headers in visit.sent if m == "POST"]
    assert [p.split("?")[0] for p, _ in beacons] == ["/beacon/v1/batch"], visit.sent
    assert beacons[0][0].endswith(f"?writeKey={cdp.write_keys['online']}")
    assert "authorization" not in beacons[0][1]
    assert beacons[0][1].get("content-type", "").startswith("text/plain")


def test_the_npm_versions_under_test_are_the_ones_in_the_readme_table() -> None:
    versions = json.loads((PAGES / "package.json").read_text())["dependencies"]
    table = README.read_text().split("### SDK compatibility", 1)[1]
    for package, version in versions.items():
        assert re.search(rf"^\| `{re.escape(package)}`.*npm {re.escape(version)} in the test", table, re.M), package
