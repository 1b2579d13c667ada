"""A real browser for the browser-SDK tests: Debian's Chromium driven by Playwright, and a local web server for
the pages that load the stock SDKs installed by `make browser`.

Playwright's own browser download cannot be reached here, so Playwright drives the system Chromium
(`executable_path`). The flags keep Chromium off the network it would otherwise call at every start (updates,
sync, safe browsing): on a closed network those connections fail by the dozen. `launch()` gives each run a
fresh temporary profile (user-data-dir), and each test its own context, so cookies never carry over.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from bench.stack import ROOT, free_port
from tests.support.service import CdpProcess

CHROMIUM = Path("/usr/bin/chromium")
SDK_MODULES = ROOT / ".cache" / "browser-sdks" / "node_modules"
PAGES = ROOT / "tests" / "e2e" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_browser() -> None:
    """Fail (not skip) when `make browser` has not run: CI must run these tests, so a missing install is an error."""
    missing = [str(p) for p in (CHROMIUM, SDK_MODULES) if not p.exists()]
    if missing:
        pytest.fail(f"run `make browser` first (missing: {', '.join(missing)})")


def sdk_file(relative: str) -> Path:
    """A file of an installed SDK package, e.g. ``@segment/analytics-next/dist/umd/standalone.js``."""
    path = SDK_MODULES / relative
    if not path.is_file():
        pytest.fail(f"{relative} not installed by `make browser`")
    return path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    """No access log on stderr: pytest shows it as noise under every failure."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class StaticSite:
    """Files served on ``http://localhost:PORT`` from a folder: another origin than the collector's
    ``127.0.0.1``, so the SDKs' requests are cross-origin as on a real site (preflights, CORS headers)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        handler = functools.partial(_Quiet, directory=str(root))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="static-site", daemon=True)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def add(self, path: str, content: str | bytes | Path) -> str:
        """Put a file at ``path`` (a string template already filled in, bytes, or a file to copy); its URL."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        return f"{self.url}/{path.lstrip('/')}"

    def page(self, path: str, template: str, **values: str) -> str:
        """A page from tests/e2e/browser/``template`` with each ``{{NAME}}`` replaced by ``values[NAME]``."""
        text = (PAGES / template).read_text()
        for name, value in values.items():
            text = text.replace("{{" + name + "}}", value)
        assert "{{" not in text, f"unfilled placeholder in {template}"
        return self.add(path, text)

    @contextmanager
    def serving(self) -> Iterator[StaticSite]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


@contextmanager
def chromium() -> Iterator[Browser]:
    """The system Chromium under Playwright, headless, with a fresh temporary profile; closed on exit."""
    require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def cdp_for_browsers(bootstrap: str, folder: Path) -> Iterator[CdpProcess]:
    """`cdp run` for one module of browser tests (a topic prefix of its own), after checking `make browser` ran;
    it must stop cleanly."""
    require_browser()
    service = CdpProcess(bootstrap, folder / "data", f"t{uuid.uuid4().hex[:10]}")
    service.start().wait_ready()
    yield service
    assert service.stop() == 0, service.output()[-3000:]
