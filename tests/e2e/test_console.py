"""The console at /console in a real browser (the system Chromium under Playwright) against one running cdp: a
new source's snippet pasted into a local page sends events that show in Live events; a profile found by e-mail
shows its identifiers and LTV; an audience's size is previewed and then shown once saved; every page opens
without console errors, for the admin and the read token; and each page's screenshot is 1280x800
(`make screenshots` keeps them, in CONSOLE_SCREENSHOTS or .screenshots/).

One `cdp run`, one Chromium and one customer (sent through the collector) for the module; each test its own
browser context.
"""

from __future__ import annotations

import json
import os
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import StaticSite, cdp_for_browsers, chromium, sdk_file
from tests.support.service import CdpProcess

pytestmark = pytest.mark.e2e

SEGMENT_SDK = "@segment/analytics-next/dist/umd/standalone.js"
PAGES = ["sources", "live", "profiles", "audiences", "pipeline", "sql"]
SIZE = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def cdp(kafka, tmp_path_factory) -> Iterator[CdpProcess]:
    with cdp_for_browsers(kafka.bootstrap, tmp_path_factory.mktemp("console")) as service:
        yield service


@pytest.fixture(scope="module")
def site(cdp: CdpProcess, tmp_path_factory) -> Iterator[StaticSite]:
    site = StaticSite(tmp_path_factory.mktemp("site"))
    with site.serving():
        yield site


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


class Customer:
    """One person sent through the collector: a page view under a cookie, then identify (e-mail) and two orders."""

    def __init__(self, cdp: CdpProcess) -> None:
        tag = uuid.uuid4().hex[:8]
        self.email = f"jane.{tag}@example.com"
        self.user_id = f"u-{tag}"
        self.anonymous_id = f"a-{tag}"
        auth = (cdp.write_keys["online"], "")
        common = {"anonymousId": self.anonymous_id, "userId": self.user_id}
        batch = [
            {"type": "page", "anonymousId": self.anonymous_id, "name": "Home", "properties": {"path": "/"}},
            {"type": "identify", **common, "traits": {"email": self.email, "name": "Jane Doe", "plan": "pro"}},
            {"type": "track", **common, "event": "Order Completed", "properties": {"revenue": 40.5, "sku": tag}},
            {"type": "track", **common, "event": "Order Completed", "properties": {"revenue": 19.4, "sku": tag}},
        ]
        r = httpx.post(f"{cdp.url}/v1/batch", json={"batch": batch}, auth=auth, timeout=10)
        assert r.status_code == 200 and r.json()["accepted"] == 4, r.text
        self.profile_id: str = wait_profile(cdp, self.email, orders=2)["profile_id"]


def wait_profile(cdp: CdpProcess, email: str, orders: int, timeout: float = 60) -> dict[str, Any]:
    """The profile holding ``email`` once it counts ``orders`` orders (through the profile API)."""
    deadline = time.monotonic() + timeout
    profile: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = httpx.get(f"{cdp.url}/v1/profiles/email/{email}", headers=cdp.admin_headers(), timeout=10)
        profile = r.json() if r.status_code == 200 else {}
        if profile.get("computed", {}).get("orders") == orders:
            return profile
        time.sleep(0.2)
    raise AssertionError(f"no profile of {email} with {orders} orders: {profile}")


@pytest.fixture(scope="module")
def customer(cdp: CdpProcess) -> Customer:
    return Customer(cdp)


class Console:
    """A browser context signed in to the console with one token, recording console errors."""

    def __init__(self, browser: Browser, cdp: CdpProcess, token: str) -> None:
        self.cdp = cdp
        self.context = browser.new_context(viewport=SIZE)
        self.errors: list[str] = []
        self.page: Page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(f"{cdp.url}/console")
        self.page.fill("#token", token)
        self.page.click("#login button[type=submit]")
        expect(self.page.locator("#who")).not_to_be_empty()

    def open(self, hash_: str) -> Page:
        self.page.goto(f"{self.cdp.url}/console#{hash_}")
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def admin_console(browser: Browser, cdp: CdpProcess) -> Iterator[Console]:
    c = Console(browser, cdp, cdp.admin_token)
    yield c
    c.close()


def test_a_new_sources_snippet_pasted_into_a_page_shows_its_events_live_and_then_its_profile(
    browser: Browser, cdp: CdpProcess, site: StaticSite, admin_console: Console
) -> None:
    page = admin_console.open("sources")
    name = f"shop-{uuid.uuid4().hex[:6]}"
    page.fill("#source-name", name)
    page.select_option("#source-channel", "online")
    page.click("#new-source button[type=submit]")
    snippet = page.locator("#snippet").inner_text(timeout=10_000)
    write_key = page.locator("#source-list tr", has_text=name).locator("code").inner_text()
    assert f'analytics._writeKey = "{write_key}"' in snippet and f'analytics._cdn = "{cdp.url}"' in snippet

    # The snippet exactly as copied, in a page of another origin, with the SDK file where the snippet loads it.
    site.add(f"analytics.js/v1/{write_key}/analytics.min.js", sdk_file(SEGMENT_SDK))
    shop = site.add(f"{name}.html", f"<!doctype html><html><head>{snippet}</head><body>shop</body></html>")
    visitor = browser.new_context()
    try:
        shop_page = visitor.new_page()
        shop_page.goto(shop)
        page.click("text=Watch its events arrive")
        expect(page.locator("#live-source")).to_have_value(name)
        rows = page.locator("#live-events tbody tr")
        expect(rows.first).to_contain_text("page", timeout=30_000)
        expect(rows.first).to_contain_text(name)
        rows.first.click()
        expect(page.locator("#live-detail")).to_contain_text(f'"sourceId": "{name}"')

        # The README's walk-through goes on: the visitor says who they are and buys; the profile has it all.
        email = f"{name}@example.com"
        shop_page.evaluate(
            """async (email) => {
                await analytics.identify("user-" + email, { email });
                await analytics.track("Order Completed", { revenue: 42 });
            }""",
            email,
        )
        expect(rows).to_have_count(3, timeout=30_000)
        wait_profile(cdp, email, orders=1)  # stitched and stored within seconds; a search before is a 404
        page = admin_console.open(f"profiles?type=email&value={email}")
        expect(page.locator("#ltv")).to_have_text("42.00")
        expect(page.locator("#identifiers")).to_contain_text(email)
        expect(page.locator("#timeline li")).to_have_count(3)
    finally:
        visitor.close()
    assert admin_console.errors == []


def test_live_events_show_a_rejected_event_with_its_reason(cdp: CdpProcess, admin_console: Console) -> None:
    bad = {"type": "track", "anonymousId": "a-bad", "event": ""}  # an empty event name is refused
    good = {"type": "track", "anonymousId": "a-good", "event": "Product Viewed"}
    r = httpx.post(f"{cdp.url}/v1/batch", json={"batch": [good, bad]}, auth=(cdp.write_keys["online"], ""), timeout=10)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    page = admin_console.open("live")
    rejected = page.locator("#live-rejected tbody tr")
    expect(rejected.first).to_contain_text("web", timeout=30_000)
    assert "event" in rejected.first.inner_text()
    assert admin_console.errors == []


def test_a_profile_found_by_email_shows_its_identifiers_and_ltv(customer: Customer, admin_console: Console) -> None:
    page = admin_console.open("profiles")
    page.select_option("#id-type", "email")
    page.fill("#id-value", customer.email)
    page.click("#profile-search button[type=submit]")
    expect(page.locator("#profile-id")).to_have_text(customer.profile_id, timeout=10_000)
    identifiers = page.locator("#identifiers")
    for value in (customer.email, customer.user_id, customer.anonymous_id):
        expect(identifiers).to_contain_text(value)
    expect(page.locator("#ltv")).to_have_text("59.90")
    expect(page.locator("#timeline li")).to_have_count(4)
    assert admin_console.errors == []


def test_an_audience_is_previewed_saved_and_listed_with_its_size(customer: Customer, admin_console: Console) -> None:
    page = admin_console.open("audiences")
    name = f"Pro buyers {uuid.uuid4().hex[:6]}"
    rule = json.dumps(
        {
            "all": [
                {"trait": "email", "op": "eq", "value": customer.email},
                {"computed": "orders", "op": "gte", "value": 2},
            ]
        }
    )
    page.fill("#aud-name", name)
    page.fill("#aud-rule", rule)
    page.click("#aud-preview")
    expect(page.locator("#aud-size")).to_have_text("1 members now", timeout=10_000)
    page.click("#aud-save")
    expect(page.locator("#aud-message")).to_have_text(f"saved {name}", timeout=10_000)
    row = page.locator("#audience-list tr", has_text=name)
    deadline = time.monotonic() + 30
    while "1" not in row.locator("td").nth(2).inner_text() and time.monotonic() < deadline:
        time.sleep(0.5)  # the evaluator fills it within its refresh interval
        page.reload()
        row = page.locator("#audience-list tr", has_text=name)
    expect(row.locator("td").nth(2)).to_have_text("1")
    assert admin_console.errors == []


def test_a_rule_the_api_refuses_shows_its_message_on_the_line_at_fault(admin_console: Console) -> None:
    page = admin_console.open("audiences")
    page.fill("#aud-rule", '{"all": [{"trait": "plan", "op": "eq", "value": "pro"}, {"trait": "plan", "op": "bogus"}]}')
    page.click("#aud-preview")
    message = page.locator("#aud-errors li").first
    expect(message).to_contain_text("rule.all[1].op", timeout=10_000)
    line = int(message.inner_text().split(":")[0].removeprefix("line "))
    assert '"op": "bogus"' in page.locator("#aud-rule").input_value().split("\n")[line - 1]


def screenshots_dir(tmp_path: Path) -> Path:
    wanted = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_every_page_opens_without_console_errors_and_is_captured_at_1280x800(
    cdp: CdpProcess, customer: Customer, admin_console: Console, tmp_path: Path
) -> None:
    rule = {"computed": "orders", "op": "gte", "value": 1}
    r = httpx.post(
        f"{cdp.url}/v1/audiences",
        json={"name": "Buyers", "scope": "profile", "rule": rule},
        headers=cdp.admin_headers(),
        timeout=10,
    )
    assert r.status_code == 201, r.text
    audience = r.json()["id"]
    folder = screenshots_dir(tmp_path)
    ready = {
        "sources": ("sources", "#source-list tbody tr"),
        "live": ("live", "#live-events tbody tr"),
        "profiles": (f"profiles?type=email&value={customer.email}", "#timeline li"),
        "audiences": (f"audiences?id={audience}", "#aud-current-size"),
        "pipeline": ("pipeline", "#fig-received"),
        "sql": ("sql", "#sql-query"),
    }
    for name in PAGES:
        hash_, selector = ready[name]
        page = admin_console.open(hash_)
        expect(page.locator(selector).first).to_be_visible(timeout=15_000)
        if name == "sources":
            page.locator("#source-list tbody tr").first.click()
            expect(page.locator("#snippet")).to_contain_text("analytics._writeKey")
        if name == "sql":
            page.click("#sql-run")
            expect(page.locator("#sql-result tbody tr").first).to_be_visible(timeout=15_000)
        if name == "pipeline":
            page.wait_for_timeout(4500)  # a few samples, so the charts have lines
            assert int(page.locator("#fig-received").inner_text().replace(",", "")) >= 4
        page.screenshot(path=str(folder / f"{name}.png"))
        assert png_size(folder / f"{name}.png") == (SIZE["width"], SIZE["height"])
        assert admin_console.errors == [], (name, admin_console.errors)


def test_the_read_token_sees_no_sql_no_audiences_and_no_write_keys(browser: Browser, cdp: CdpProcess) -> None:
    console = Console(browser, cdp, cdp.read_token)
    try:
        nav = console.page.locator("#nav a")
        expect(nav).to_have_text(["Sources", "Live events", "Profiles", "Pipeline"])
        page = console.open("sql")  # not its page: the first page it may open instead
        expect(page.locator("main h1")).to_have_text("Sources")
        expect(page.locator("#source-list tbody tr").first).to_be_visible()
        assert cdp.write_keys["online"] not in page.content()
        assert page.locator("#new-source").count() == 0
        for name in ("live", "profiles", "pipeline"):
            console.open(name).locator("main h1").wait_for()
        assert console.errors == []
    finally:
        console.close()
    r = httpx.get(f"{cdp.url}/v1/sources", headers={"Authorization": f"Bearer {cdp.read_token}"}, timeout=10)
    assert r.status_code == 200 and r.json()["sources"]
    assert all("write_key" not in s and "snippet" not in s for s in r.json()["sources"])
    refused = httpx.post(
        f"{cdp.url}/v1/sources",
        json={"name": "x", "channel": "online"},
        headers={"Authorization": f"Bearer {cdp.read_token}"},
        timeout=10,
    )
    assert refused.status_code == 403
