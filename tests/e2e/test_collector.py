"""The collector end to end, as SDKs use it: every endpoint with Segment-spec payloads (analytics.js,
analytics-python/node batches, mobile screens), write key by Basic auth or in the body, gzip, text/plain
(sendBeacon), CORS; clock-skew correction and retry dedup checked in ClickHouse; one test per class of bad
input; a mixed batch split between ClickHouse and the dead-letter topic; and a fuzz pass that never gets a 5xx.

One `cdp run` per module against the session broker; every test uses its own message/anonymous ids.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import socket
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.fixtures import CHROME_UA, in_list, iso, mid, now_iso, read_topic, wait_rows
from tests.support.service import CdpProcess

pytestmark = pytest.mark.e2e

ENDPOINTS = ("track", "identify", "page", "screen", "group", "alias", "batch")


@pytest.fixture(scope="module")
def cdp(shared_cdp: CdpProcess) -> CdpProcess:
    return shared_cdp


@pytest.fixture(scope="module")
def http(cdp: CdpProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cdp.url, timeout=30) as client:
        yield client


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def post(http: httpx.Client, path: str, body: Any, key: str | None = None, **headers: str) -> httpx.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    hdrs = {"Content-Type": "application/json", **(basic(key) if key else {}), **headers}
    return http.post(path, content=raw, headers=hdrs)


# ---------------------------------------------------------------------------------------------------------
# 1. every endpoint, as real SDKs send it
# ---------------------------------------------------------------------------------------------------------


def analytics_js_context(page_path: str = "/pricing") -> dict[str, Any]:
    return {
        "page": {
            "path": page_path,
            "referrer": "https://www.google.com/",
            "search": "?utm_source=google",
            "title": "Pricing - Acme",
            "url": f"https://acme.example{page_path}?utm_source=google",
        },
        "userAgent": CHROME_UA,
        "userAgentData": {"brands": [{"brand": "Chromium", "version": "124"}], "mobile": False, "platform": "macOS"},
        "locale": "en-GB",
        "library": {"name": "analytics.js", "version": "npm:next-1.64.0"},
        "timezone": "Europe/London",
        "campaign": {"source": "google"},
    }


def test_every_endpoint_with_sdk_payloads_lands_in_clickhouse(cdp: CdpProcess, http: httpx.Client) -> None:
    web, app = cdp.write_keys["online"], cdp.write_keys["mobile"]
    anon, device = f"anon-{uuid.uuid4().hex[:12]}", str(uuid.uuid4()).upper()
    user = f"user-{uuid.uuid4().hex[:8]}"
    ids: dict[str, tuple[str, str, str]] = {}  # message id -> expected (type, event, channel)

    # analytics.js: text/plain (fetch keepalive / sendBeacon), writeKey in the body, no Authorization.
    m = mid("ajs-track")
    r = http.post(
        "/v1/track",
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://acme.example"},
        content=json.dumps(
            {
                "timestamp": now_iso(-0.2),
                "integrations": {},
                "type": "track",
                "event": "Product Viewed",
                "properties": {"product_id": "sku-1", "price": 19.99, "currency": "GBP"},
                "context": analytics_js_context(),
                "messageId": m,
                "anonymousId": anon,
                "writeKey": web,
                "userId": None,
                "sentAt": now_iso(),
                "_metadata": {"bundled": ["Segment.io"], "unbundled": []},
            }
        ),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    assert r.headers.get("access-control-allow-origin") in ("*", "https://acme.example")
    ids[m] = ("track", "Product Viewed", "online")

    m = mid("ajs-page")
    r = post(
        http,
        "/v1/page",
        {
            "type": "page",
            "name": "Pricing",
            "category": "Docs",
            "properties": {"path": "/pricing", "title": "Pricing"},
            "context": analytics_js_context(),
            "messageId": m,
            "anonymousId": anon,
            "writeKey": web,
            "timestamp": now_iso(-0.1),
            "sentAt": now_iso(),
        },
    )
    assert r.status_code == 200, r.text
    ids[m] = ("page", "Pricing", "online")

    m = mid("ajs-identify")
    r = post(
        http,
        "/v1/identify",
        {
            "type": "identify",
            "userId": user,
            "anonymousId": anon,
            "messageId": m,
            "traits": {"email": f" {user}@Example.COM ", "name": "Ada", "plan": "pro"},
            "context": analytics_js_context("/account"),
        },
        key=web,
    )
    assert r.status_code == 200, r.text
    ids[m] = ("identify", "", "online")

    m = mid("ajs-group")
    r = post(
        http,
        "/v1/group",
        {
            "type": "group",
            "userId": user,
            "groupId": "acct-42",
            "messageId": m,
            "traits": {"name": "Acme Ltd", "industry": "Retail", "employees": 250},
        },
        key=web,
    )
    assert r.status_code == 200, r.text
    ids[m] = ("group", "", "online")

    m = mid("ajs-alias")
    r = post(http, "/v1/alias", {"type": "alias", "previousId": anon, "userId": user, "messageId": m}, key=web)
    assert r.status_code == 200, r.text
    ids[m] = ("alias", "", "online")

    # analytics-ios / analytics-android: screen with context.device, Basic auth, the mobile source.
    m = mid("ios-screen")
    r = post(
        http,
        "/v1/screen",
        {
            "type": "screen",
            "name": "Home",
            "properties": {"tab": "featured"},
            "anonymousId": device,
            "messageId": m,
            "timestamp": now_iso(-1),
            "sentAt": now_iso(),
            "context": {
                "app": {"build": "42", "name": "Acme", "namespace": "com.acme.app", "version": "3.2.1"},
                "device": {
                    "id": device,
                    "advertisingId": str(uuid.uuid4()).upper(),
                    "adTrackingEnabled": True,
                    "manufacturer": "Apple",
                    "model": "iPhone15,2",
                    "type": "ios",
                    "name": "iPhone",
                },
                "library": {"name": "analytics-ios", "version": "4.1.8"},
                "os": {"name": "iOS", "version": "17.4.1"},
                "network": {"wifi": True, "carrier": "EE"},
                "screen": {"width": 393, "height": 852},
                "locale": "en-GB",
                "timezone": "Europe/London",
            },
        },
        key=app,
    )
    assert r.status_code == 200, r.text
    ids[m] = ("screen", "Home", "mobile")

    # analytics-python: /v1/batch, Basic auth, gzip, sentAt and context at the batch level.
    batch_ids = [mid("py") for _ in range(3)]
    body = {
        "batch": [
            {
                "type": "track",
                "event": "Order Completed",
                "userId": user,
                "messageId": batch_ids[0],
                "timestamp": now_iso(-3),
                "properties": {"revenue": 42.5},
                "context": {"ip": "198.51.100.7"},
            },
            {
                "type": "identify",
                "userId": user,
                "messageId": batch_ids[1],
                "timestamp": now_iso(-2),
                "traits": {"email": f"{user}@example.com"},
            },
            {"type": "page", "name": "Receipt", "userId": user, "messageId": batch_ids[2], "timestamp": now_iso(-1)},
        ],
        "sentAt": now_iso(),
        "context": {"library": {"name": "analytics-python", "version": "2.3.2"}},
    }
    r = post(http, "/v1/batch", gzip.compress(orjson.dumps(body)), key=web, **{"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3 and "rejected" not in r.json()
    ids.update(
        zip(
            batch_ids,
            [("track", "Order Completed", "online"), ("identify", "", "online"), ("page", "Receipt", "online")],
            strict=True,
        )
    )

    # analytics-node: batch with writeKey in the body and lower-case "Track" type, mobile source.
    node_ids = [mid("node") for _ in range(2)]
    r = post(
        http,
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "track",
                    "event": "App Opened",
                    "anonymousId": device,
                    "messageId": node_ids[0],
                    "timestamp": now_iso(-1),
                    "_metadata": {"nodeVersion": "20.11.0", "jsRuntime": "node"},
                },
                {"type": "screen", "name": "Cart", "anonymousId": device, "messageId": node_ids[1]},
            ],
            "writeKey": app,
            "sentAt": now_iso(),
            "context": {"library": {"name": "@segment/analytics-node", "version": "2.1.0"}},
        },
    )
    assert r.status_code == 200, r.text
    ids[node_ids[0]] = ("track", "App Opened", "mobile")
    ids[node_ids[1]] = ("screen", "Cart", "mobile")

    rows = wait_rows(cdp, list(ids))
    got = {k: tuple(v[1:]) for k, v in rows.items()}
    assert got == ids

    # The edge enrichment reached the warehouse: parsed UA, library, device, batch-level context merged.
    ajs = next(k for k in ids if k.startswith("ajs-track"))
    ctx = json.loads(cdp.scalar(f"SELECT context FROM cdp.events WHERE message_id = '{ajs}'"))
    assert ctx["library"]["name"] == "analytics.js"
    assert ctx["page"]["path"] == "/pricing"
    assert ctx["ua"]["browser"] == "Chrome" and ctx["ua"]["device_type"] == "desktop"
    assert ctx["ip"] == "127.0.0.1"
    ios = next(k for k in ids if k.startswith("ios-screen"))
    ctx = json.loads(cdp.scalar(f"SELECT context FROM cdp.events WHERE message_id = '{ios}'"))
    assert ctx["device"]["id"] == device and ctx["device"]["model"] == "iPhone15,2"
    ctx = json.loads(cdp.scalar(f"SELECT context FROM cdp.events WHERE message_id = '{batch_ids[0]}'"))
    assert ctx["library"]["name"] == "analytics-python" and ctx["ip"] == "198.51.100.7"
    # No write key is stored anywhere in the event.
    stored = cdp.scalar(
        f"SELECT count() FROM cdp.events WHERE message_id IN ({in_list(ids)}) AND "
        f"(position(context, '{web}') > 0 OR position(properties, '{web}') > 0 OR "
        f"position(traits, '{web}') > 0)"
    )
    assert stored == 0


def test_cors_preflight_and_simple_request(cdp: CdpProcess, http: httpx.Client) -> None:
    for path in [f"/v1/{e}" for e in ENDPOINTS]:
        r = http.options(
            path,
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,authorization",
            },
        )
        assert r.status_code in (200, 204), (path, r.status_code, r.text)
        assert r.headers["access-control-allow-origin"] in ("*", "https://shop.example")
        assert "POST" in r.headers["access-control-allow-methods"]
        allowed = r.headers["access-control-allow-headers"].lower()
        assert "content-type" in allowed and "authorization" in allowed
        # A wildcard origin is never combined with credentials (browsers would refuse it anyway).
        assert r.headers.get("access-control-allow-credentials") != "true"
    r = post(http, "/v1/track", {"event": "x"}, Origin="https://shop.example")  # no key: 401, still CORS
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] in ("*", "https://shop.example")


def test_clock_skew_is_corrected_from_sent_at(cdp: CdpProcess, http: httpx.Client) -> None:
    """A device clock 1 h behind: the stored timestamp is receivedAt minus (sentAt - originalTimestamp)."""
    key = cdp.write_keys["mobile"]
    # One clock reading for every client timestamp: separate now() calls can straddle a millisecond, and the
    # expected differences would then be off by one.
    base = datetime.now(UTC)

    def device(delta_s: float) -> str:
        return iso(base + timedelta(seconds=delta_s))

    single, first, second, plain = mid("skew"), mid("skew-b1"), mid("skew-b2"), mid("noskew")
    r = post(
        http,
        "/v1/track",
        {
            "event": "Skewed",
            "anonymousId": "dev-skew",
            "messageId": single,
            "originalTimestamp": device(-3600 - 2),
            "sentAt": device(-3600),
        },
        key=key,
    )
    assert r.status_code == 200, r.text
    # analytics-python style: per-item `timestamp` (client clock), one batch-level `sentAt`.
    r = post(
        http,
        "/v1/batch",
        {
            "sentAt": device(-3600),
            "batch": [
                {
                    "type": "track",
                    "event": "Skewed",
                    "anonymousId": "dev-skew",
                    "messageId": first,
                    "timestamp": device(-3600 - 5),
                },
                {
                    "type": "track",
                    "event": "Skewed",
                    "anonymousId": "dev-skew",
                    "messageId": second,
                    "timestamp": device(-3600 - 7),
                    "sentAt": device(-3600 - 1),
                },
            ],
        },
        key=key,
    )
    assert r.status_code == 200, r.text
    # Historical import from a server library: timestamp without sentAt is kept as given.
    r = post(
        http,
        "/v1/track",
        {"event": "Backfill", "userId": "u-backfill", "messageId": plain, "timestamp": "2023-11-05T08:30:00.250Z"},
        key=key,
    )
    assert r.status_code == 200, r.text
    rows = wait_rows(
        cdp,
        [single, first, second, plain],
        "message_id, toUnixTimestamp64Milli(received_at) - toUnixTimestamp64Milli(timestamp), toString(timestamp)",
    )
    assert rows[single][1] == 2000
    assert rows[first][1] == 5000
    assert rows[second][1] == 6000  # the item's own sentAt wins over the batch's
    assert rows[plain][2] == "2023-11-05 08:30:00.250"


def test_retried_request_is_stored_once(cdp: CdpProcess, http: httpx.Client) -> None:
    """An SDK retry (same messageId, new sentAt) after a lost answer: one row in cdp.events."""
    key, anon = cdp.write_keys["online"], f"anon-{uuid.uuid4().hex[:10]}"
    m, marker = mid("retry"), mid("marker")
    event = {
        "type": "track",
        "event": "Checkout Started",
        "anonymousId": anon,
        "messageId": m,
        "originalTimestamp": now_iso(-1),
    }
    for attempt in range(2):
        r = post(http, "/v1/track", {**event, "sentAt": now_iso(attempt * 0.5)}, key=key)
        assert r.status_code == 200, r.text
    # The batch retry of the same event, too.
    r = post(http, "/v1/batch", {"batch": [event], "sentAt": now_iso()}, key=key)
    assert r.status_code == 200, r.text
    # Same anonymousId = same partition: once the marker is stored, the copies before it were processed.
    r = post(http, "/v1/track", {"event": "Marker", "anonymousId": anon, "messageId": marker}, key=key)
    assert r.status_code == 200, r.text
    wait_rows(cdp, [marker])
    time.sleep(1.0)  # let the sink flush whatever of the copies came in the same poll
    assert cdp.scalar(f"SELECT count() FROM cdp.events WHERE message_id = '{m}'") == 1


# ---------------------------------------------------------------------------------------------------------
# 2. bad input: one test per class, each a JSON error that names the field
# ---------------------------------------------------------------------------------------------------------


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body.get("success") is False and isinstance(body.get("error"), str) and body["error"], body
    return body


def locs(body: dict[str, Any]) -> list[str]:
    return [e["loc"] for e in body.get("errors", [])]


def test_not_json(cdp: CdpProcess, http: httpx.Client) -> None:
    body = error_of(post(http, "/v1/track", b"{'event': 'x'", key=cdp.write_keys["online"]), 400)
    assert "JSON" in body["error"]


def test_json_not_an_object(cdp: CdpProcess, http: httpx.Client) -> None:
    for raw in (b"[1, 2]", b'"track"', b"42", b"null", b"true"):
        body = error_of(post(http, "/v1/track", raw, key=cdp.write_keys["online"]), 400)
        assert "object" in body["error"]


def test_missing_write_key(cdp: CdpProcess, http: httpx.Client) -> None:
    body = error_of(post(http, "/v1/track", {"event": "x", "anonymousId": "a"}), 401)
    assert "write key" in body["error"]
    body = error_of(post(http, "/v1/track", {"event": "x", "anonymousId": "a", "writeKey": ""}), 401)
    assert "write key" in body["error"]


def test_unknown_write_key(cdp: CdpProcess, http: httpx.Client) -> None:
    body = error_of(post(http, "/v1/track", {"event": "x", "anonymousId": "a"}, key="wk_unknown"), 401)
    assert "unknown write key" in body["error"]
    body = error_of(post(http, "/v1/batch", {"batch": [], "writeKey": "wk_unknown"}), 401)
    assert "unknown write key" in body["error"]


def test_track_without_event(cdp: CdpProcess, http: httpx.Client) -> None:
    body = error_of(post(http, "/v1/track", {"anonymousId": "a", "properties": {}}, key=cdp.write_keys["online"]), 400)
    assert locs(body) == ["event"]


def test_identify_without_user_or_anonymous_id(cdp: CdpProcess, http: httpx.Client) -> None:
    body = error_of(post(http, "/v1/identify", {"traits": {"email": "a@b.c"}}, key=cdp.write_keys["online"]), 400)
    assert "userId" in locs(body)
    assert any("anonymousId" in e["msg"] for e in body["errors"])


def test_bad_timestamp(cdp: CdpProcess, http: httpx.Client) -> None:
    key = cdp.write_keys["online"]
    for value in ("yesterday", "2024-13-45T00:00:00Z", 1714550400, "0001-01-01T00:00:00Z"):
        body = error_of(post(http, "/v1/track", {"event": "x", "anonymousId": "a", "timestamp": value}, key=key), 400)
        assert locs(body) == ["timestamp"], (value, body)


def test_single_event_over_32kb(cdp: CdpProcess, http: httpx.Client) -> None:
    body = error_of(
        post(
            http,
            "/v1/track",
            {"event": "x", "anonymousId": "a", "properties": {"blob": "x" * 33_000}},
            key=cdp.write_keys["online"],
        ),
        413,
    )
    assert "32768" in body["error"] or "32 KB" in body["error"]


def test_event_just_under_32kb_is_accepted(cdp: CdpProcess, http: httpx.Client) -> None:
    """The limit is on what the client sent, not on the enriched event (receivedAt, parsed UA, ip...)."""
    m = mid("big")
    event = {
        "event": "Big",
        "anonymousId": "a-big",
        "messageId": m,
        "context": {"userAgent": CHROME_UA},
        "properties": {"blob": ""},
    }
    event["properties"]["blob"] = "y" * (32 * 1024 - len(orjson.dumps(event)) - 20)
    assert len(orjson.dumps(event)) < 32 * 1024
    r = post(http, "/v1/track", event, key=cdp.write_keys["online"])
    assert r.status_code == 200, r.text
    wait_rows(cdp, [m])


def _batch_of_size(nbytes: int) -> bytes:
    item = {"type": "track", "event": "Filler", "anonymousId": "a", "properties": {"pad": "z" * 10_000}}
    n = nbytes // len(orjson.dumps(item)) + 1
    return orjson.dumps({"batch": [item] * n})


def test_request_over_500kb_with_content_length(cdp: CdpProcess, http: httpx.Client) -> None:
    raw = _batch_of_size(600 * 1024)
    body = error_of(post(http, "/v1/batch", raw, key=cdp.write_keys["online"]), 413)
    assert "512000" in body["error"] or "500" in body["error"]


def _raw_chunked(cdp: CdpProcess, path: str, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, bytes]:
    """POST with Transfer-Encoding: chunked over a raw socket (no Content-Length), tolerating the server
    answering and closing before the whole body was sent; returns (status, body)."""
    with socket.create_connection(("127.0.0.1", cdp.port), timeout=30) as s:
        head = [
            f"POST {path} HTTP/1.1",
            f"Host: 127.0.0.1:{cdp.port}",
            "Transfer-Encoding: chunked",
            "Connection: close",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for chunk in chunks:
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while part := s.recv(65536):
                data += part
        except ConnectionResetError:
            pass
    head_raw, _, body = data.partition(b"\r\n\r\n")
    status = int(head_raw.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_raw.lower():  # de-chunk the answer
        out, rest = b"", body
        while rest:
            size_raw, _, rest = rest.partition(b"\r\n")
            size = int(size_raw, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        body = out
    return status, body


def test_request_over_500kb_chunked_without_content_length(cdp: CdpProcess) -> None:
    raw = _batch_of_size(700 * 1024)
    chunks = [raw[i : i + 16384] for i in range(0, len(raw), 16384)]
    status, body = _raw_chunked(
        cdp, "/v1/batch", chunks, {**basic(cdp.write_keys["online"]), "Content-Type": "application/json"}
    )
    assert status == 413, body
    assert json.loads(body)["success"] is False
    # A chunked body under the limit works.
    m = mid("chunked")
    raw = orjson.dumps({"event": "Chunked", "anonymousId": "a-chunk", "messageId": m})
    status, body = _raw_chunked(cdp, "/v1/track", [raw[:10], raw[10:]], {**basic(cdp.write_keys["online"])})
    assert status == 200, body


def test_gzip_bomb_is_refused_fast(cdp: CdpProcess, http: httpx.Client) -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"0" * (1 << 20)
    bomb = comp.compress(b'{"batch": [{"type": "track", "event": "')
    bomb += b"".join(comp.compress(zeros) for _ in range(300))
    bomb += comp.flush()
    assert len(bomb) < 500 * 1024  # small on the wire: 300 MB once inflated
    started = time.monotonic()
    body = error_of(post(http, "/v1/batch", bomb, key=cdp.write_keys["online"], **{"Content-Encoding": "gzip"}), 413)
    assert time.monotonic() - started < 3.0
    assert "decompressed" in body["error"]


def test_corrupt_gzip(cdp: CdpProcess, http: httpx.Client) -> None:
    good = gzip.compress(orjson.dumps({"event": "x", "anonymousId": "a"}))
    for raw in (b"this is not gzip", good[:-12], good[:10] + b"\x00" * 8 + good[18:]):
        body = error_of(post(http, "/v1/track", raw, key=cdp.write_keys["online"], **{"Content-Encoding": "gzip"}), 400)
        assert "gzip" in body["error"]


def test_unsupported_content_encoding(cdp: CdpProcess, http: httpx.Client) -> None:
    for coding in ("br", "zstd", "gzip, br"):
        body = error_of(
            post(http, "/v1/track", b"\x1b\x00", key=cdp.write_keys["online"], **{"Content-Encoding": coding}), 415
        )
        assert "encoding" in body["error"]


def test_batch_not_a_list(cdp: CdpProcess, http: httpx.Client) -> None:
    for batch in ({"type": "track"}, "events", None):
        body = error_of(post(http, "/v1/batch", {"batch": batch}, key=cdp.write_keys["online"]), 400)
        assert locs(body) == ["batch"]


def test_mixed_batch_keeps_good_events_and_dead_letters_bad_ones(cdp: CdpProcess, http: httpx.Client) -> None:
    key, run = cdp.write_keys["online"], uuid.uuid4().hex[:10]
    good = [mid(f"good-{run}") for _ in range(3)]
    items: list[Any] = [
        {"type": "track", "event": "Good", "anonymousId": "a-mixed", "messageId": good[0]},
        {"type": "track", "anonymousId": "a-mixed", "messageId": f"bad-{run}-1"},  # no event
        {"type": "identify", "traits": {"x": 1}, "messageId": f"bad-{run}-2"},  # no userId/anonymousId
        {"type": "page", "name": "Good", "anonymousId": "a-mixed", "messageId": good[1]},
        {"type": "track", "event": "x", "anonymousId": "a-mixed", "timestamp": "soon", "messageId": f"bad-{run}-4"},
        f"not an object {run}",
        {"type": "explode", "anonymousId": "a-mixed", "messageId": f"bad-{run}-6"},
        {"type": "identify", "userId": "u-mixed", "messageId": good[2]},
        {
            "type": "track",
            "event": "Big",
            "anonymousId": "a",
            "messageId": f"bad-{run}-8",
            "properties": {"blob": "b" * 33_000},
        },
    ]
    r = post(http, "/v1/batch", {"batch": items, "sentAt": now_iso()}, key=key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["accepted"] == 3
    rejected = {x["index"]: [e["loc"] for e in x["errors"]] for x in body["rejected"]}
    assert rejected == {
        1: ["batch[1].event"],
        2: ["batch[2].userId"],
        4: ["batch[4].timestamp"],
        5: ["batch[5]"],
        6: ["batch[6].type"],
        8: ["batch[8]"],
    }
    wait_rows(cdp, good)
    assert cdp.scalar(f"SELECT count() FROM cdp.events WHERE message_id LIKE 'bad-{run}-%'") == 0

    def mine(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [x for x in records if run in orjson.dumps(x.get("event")).decode()]

    dead = mine(
        read_topic(
            cdp.env["CDP_KAFKA_BOOTSTRAP"],
            f"{cdp.env['CDP_TOPIC_PREFIX']}.deadletter",
            lambda recs: len(mine(recs)) >= 6,
        )
    )
    assert len(dead) == 6
    by_event = {orjson.dumps(x["event"]).decode(): x for x in dead}
    for index in rejected:
        record = by_event[orjson.dumps(items[index]).decode()]
        assert record["reason"] and record["reason"].startswith(f"batch[{index}]")
        assert record["channel"] == "online"
    assert "event" in by_event[orjson.dumps(items[1]).decode()]["reason"]
    assert "userId" in by_event[orjson.dumps(items[2]).decode()]["reason"]


# ---------------------------------------------------------------------------------------------------------
# fuzz: nothing a client sends gets a 5xx
# ---------------------------------------------------------------------------------------------------------


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


NASTY: list[bytes] = [
    b"",
    b" ",
    b"\n\n",
    b"null",
    b"true",
    b"0",
    b"-1e999",
    b"[]",
    b'""',
    b"{",
    b"}",
    b"}{",
    b'{"a":1}{"b":2}',
    b"\x00" * 16,
    b"\xff\xfe{\x00}\x00",
    "{}".encode("utf-16"),
    b"\xef\xbb\xbf{}",
    b'{"event": "\xff\xfe"}',
    b'{"event": "\\ud800"}',
    b'{"event": NaN}',
    b"[" * 5000 + b"]" * 5000,
    json.dumps({"event": "deep", "anonymousId": "a", "properties": _nested(300)}).encode(),
    json.dumps({"event": "deep", "anonymousId": "a", "context": _nested(600)}).encode(),
    json.dumps({"batch": [_nested(300, {"type": "track", "event": "x", "anonymousId": "a"})]}).encode(),
    json.dumps({"batch": [{"type": "track", "event": "d", "anonymousId": "a", "properties": _nested(400)}]}).encode(),
    b'{"event": "x", "anonymousId": 123456789012345678901234567890}',
    b'{"event": "x", "anonymousId": 1e308, "userId": -0.0}',
    orjson.dumps({"event": "x", "userId": {"id": 1}}),
    orjson.dumps({"event": "x", "userId": True}),
    orjson.dumps({"event": ["x"], "anonymousId": "a"}),
    orjson.dumps({"event": "x", "anonymousId": "a", "type": 5}),
    orjson.dumps({"type": None, "event": "x", "anonymousId": "a"}),
    orjson.dumps(
        {"event": "x", "anonymousId": "a", "timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"}
    ),
    orjson.dumps(
        {
            "event": "x",
            "anonymousId": "a",
            "originalTimestamp": "9999-12-31T23:59:59-23:59",
            "sentAt": "0001-01-01T00:00:00+23:59",
        }
    ),
    orjson.dumps({"event": "x", "anonymousId": "a", "timestamp": "0001-01-01T00:00:00+01:00"}),
    orjson.dumps({"event": "x", "anonymousId": "a", "timestamp": "9999-12-31T23:59:59-05:00"}),
    orjson.dumps({"event": "x", "anonymousId": "a", "timestamp": "2024-01-01T00:00:00+25:00"}),
    orjson.dumps({"event": "x", "anonymousId": "a", "sentAt": {"a": 1}}),
    orjson.dumps({"event": "x", "anonymousId": "a", "context": []}),
    orjson.dumps({"event": "x", "anonymousId": "a", "context": {"userAgent": 5, "ip": ["1"], "traits": "t"}}),
    orjson.dumps({"event": "x", "anonymousId": "a", "context": {"userAgent": "Mozilla/5.0 (" * 2000}}),
    orjson.dumps({"event": "x", "anonymousId": "a", "context": {"ip": "999.1.1.1", "page": None}}),
    orjson.dumps({"event": "x", "anonymousId": "a", "properties": {"": {"\u0000": "\u0000"}, "k" * 5000: 1}}),
    orjson.dumps({"event": "\u0000", "anonymousId": "\u202e\U0001f600", "messageId": "' OR 1=1 --"}),
    orjson.dumps({"event": "x", "anonymousId": "a", "messageId": {"id": 1}}),
    orjson.dumps({"event": "x", "anonymousId": "a", "messageId": 1e20, "integrations": "all"}),
    orjson.dumps({"batch": {}}),
    orjson.dumps({"batch": [1, "x", None, [], True]}),
    orjson.dumps({"batch": [{"type": "nope"}], "context": "str"}),
    orjson.dumps(
        {
            "batch": [{"type": "track", "event": "x", "anonymousId": "a", "context": "s"}],
            "context": {"a": 1},
            "integrations": {"All": False},
        }
    ),
    orjson.dumps({"batch": [{"type": "track", "event": "x", "anonymousId": "a"}], "sentAt": 5}),
    orjson.dumps({"batch": [{"type": "track", "event": "x", "anonymousId": "a"}], "sentAt": "0001-01-01T00:00Z"}),
    orjson.dumps(
        {
            "batch": [{"type": "track", "event": "x", "anonymousId": "a", "originalTimestamp": "0001-01-01T00:00:00Z"}],
            "sentAt": "9999-12-31T00:00Z",
        }
    ),
    orjson.dumps({"writeKey": 5, "event": "x"}),
    orjson.dumps({"writeKey": ["k"], "event": "x"}),
    orjson.dumps({"writeKey": {"k": 1}, "batch": []}),
]

AUTH_VARIANTS = ["basic", "none", "garbage-basic", "non-utf8-basic", "bearer", "body-key"]


def _auth(cdp: CdpProcess, variant: str, raw: bytes) -> tuple[dict[str, str], bytes]:
    key = cdp.write_keys["online"]
    if variant == "basic":
        return basic(key), raw
    if variant == "garbage-basic":
        return {"Authorization": "Basic !!not-base64!!"}, raw
    if variant == "non-utf8-basic":
        return {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()}, raw
    if variant == "bearer":
        return {"Authorization": f"Bearer {key}"}, raw
    if variant == "body-key":
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            return {}, raw
        if isinstance(value, dict):
            return {}, json.dumps({**value, "writeKey": key}).encode()
    return {}, raw


def test_nasty_bodies_never_get_a_5xx(cdp: CdpProcess, http: httpx.Client) -> None:
    rng = random.Random(3)
    failures = []
    for i, raw in enumerate(NASTY):
        for endpoint in ENDPOINTS:
            variant = "basic" if (i + len(endpoint)) % 3 else rng.choice(AUTH_VARIANTS)
            headers, body = _auth(cdp, variant, raw)
            extra = {}
            if rng.random() < 0.2:
                body, extra = gzip.compress(body), {"Content-Encoding": "gzip"}
            r = http.post(
                f"/v1/{endpoint}",
                content=body,
                headers={"Content-Type": rng.choice(["application/json", "text/plain", "x/y"]), **headers, **extra},
            )
            if r.status_code >= 500 or not r.headers.get("content-type", "").startswith("application/json"):
                failures.append((endpoint, variant, raw[:80], r.status_code, r.text[:200]))
    assert not failures, failures
    assert http.get("/healthz").status_code == 200
    assert "Traceback" not in cdp.output()


json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_value = st.recursive(
    json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # stdlib: integers beyond 64 bits too


segment_key = st.sampled_from(
    [
        "type",
        "event",
        "name",
        "userId",
        "anonymousId",
        "previousId",
        "groupId",
        "traits",
        "properties",
        "context",
        "integrations",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "messageId",
        "batch",
        "writeKey",
        "receivedAt",
        "channel",
    ]
)
timestamp_ish = st.sampled_from(
    [
        "2024-05-01T10:00:00Z",
        "2024-05-01",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999+14:00",
        "2024-02-30T00:00:00Z",
        "",
        " ",
    ]
)
segment_body = st.dictionaries(segment_key, json_value | timestamp_ish, max_size=8)
batch_body = st.fixed_dictionaries(
    {"batch": st.lists(segment_body | json_value, max_size=4)},
    optional={"sentAt": json_value | timestamp_ish, "context": json_value},
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    body=st.one_of(segment_body.map(_dumps), batch_body.map(_dumps), st.binary(max_size=200)),
    gz=st.booleans(),
)
def test_fuzzed_bodies_never_get_a_5xx(
    cdp: CdpProcess, http: httpx.Client, endpoint: str, body: bytes, gz: bool
) -> None:
    headers = {**basic(cdp.write_keys["online"]), "Content-Type": "application/json"}
    if gz:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    r = http.post(f"/v1/{endpoint}", content=body, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text)
    assert r.status_code in (200, 400, 401, 413, 415), (r.status_code, r.text)
    assert isinstance(r.json(), dict)
