"""The SDK settings documents and the SDKs' own paths, on the collector app with in-memory fakes for Kafka and
the sources topic: what each SDK reads from the documents, the address they name, the errors for unknown write
keys, every path alias reaching the same handler, the write key in the query (sendBeacon), and CORS preflights
for the headers the browser SDKs add."""

from __future__ import annotations

import base64

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import Services
from api.sdk_documents import PublicBase, public_base, rudderstack_source_config, segment_settings, source_id
from tests.api.routes.fixtures import WRITE_KEY, error_of, sent, services

KEY = WRITE_KEY
CREATED_AT_MS = 1_700_000_000_000


def client(**settings: object) -> tuple[TestClient, Services]:
    """The collector app over fake parts, at an address of its own (the documents name the request's host)."""
    s = services()
    s.settings = s.settings.model_copy(update=settings)
    return TestClient(create_app(s, query_api=False), base_url="http://cdp.test:8080"), s


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


# ---------------------------------------------------------------------------------------------- documents


def test_public_base_prefers_the_configured_url_then_forwarded_then_host() -> None:
    assert public_base("https://cdp.example.com/collect", "http", "10.0.0.1:8080") == PublicBase(
        "https", "cdp.example.com/collect"
    )
    assert public_base("", "http", "10.0.0.1:8080", "https", "cdp.example.com") == PublicBase(
        "https", "cdp.example.com"
    )
    assert public_base("", "http", "[::1]:8080") == PublicBase("http", "[::1]:8080")


@pytest.mark.parametrize("host", [None, "", "evil.example/<script>", "a b", "x@y"])
def test_public_base_refuses_a_host_header_that_is_not_a_host(host: str | None) -> None:
    with pytest.raises(ValueError):
        public_base("", "http", host)


def test_segment_settings_name_only_the_segment_destination_pointing_here() -> None:
    doc = segment_settings(KEY, PublicBase("https", "cdp.example.com"))
    assert list(doc["integrations"]) == ["Segment.io"]  # one integration: analytics-next loads no device mode
    segment = doc["integrations"]["Segment.io"]
    assert (segment["apiKey"], segment["apiHost"], segment["protocol"]) == (KEY, "cdp.example.com/v1", "https")
    assert doc["metrics"]["sampleRate"] == 0  # no telemetry to Segment
    assert not doc["remotePlugins"] and not any(doc["enabledMiddleware"].values())


def test_rudderstack_source_config_is_enabled_without_destinations_and_names_this_data_plane() -> None:
    doc = rudderstack_source_config(KEY, "web", CREATED_AT_MS, PublicBase("https", "cdp.example.com"))
    source = doc["source"]
    assert source["enabled"] is True and source["destinations"] == [] and isinstance(source["config"], dict)
    assert source["id"] == source_id(KEY) and KEY not in source["id"]
    assert source["config"]["statsCollection"] == {"errors": {"enabled": False}, "metrics": {"enabled": False}}
    assert source["dataplanes"]["US"] == [{"url": "https://cdp.example.com", "default": True}]
    assert source["createdAt"] == "2023-11-14T22:13:20.000Z"


# ----------------------------------------------------------------------------------------------- routes


def test_segment_settings_route_uses_the_request_host_or_the_public_url() -> None:
    http, _ = client()
    r = http.get(f"/v1/projects/{KEY}/settings")
    assert r.status_code == 200
    assert r.json()["integrations"]["Segment.io"]["apiHost"] == "cdp.test:8080/v1"
    http, _ = client(public_url="https://cdp.example.com/")
    assert http.get(f"/v1/projects/{KEY}/settings").json()["integrations"]["Segment.io"]["apiHost"] == (
        "cdp.example.com/v1"
    )


def test_forwarded_host_counts_only_when_trusted() -> None:
    forwarded = {"X-Forwarded-Host": "cdp.example.com", "X-Forwarded-Proto": "https"}
    for trusted, expected in ((False, ("cdp.test:8080/v1", "http")), (True, ("cdp.example.com/v1", "https"))):
        http, _ = client(trust_forwarded_for=trusted)
        segment = http.get(f"/v1/projects/{KEY}/settings", headers=forwarded).json()["integrations"]["Segment.io"]
        assert (segment["apiHost"], segment["protocol"]) == expected


def test_unknown_write_keys_get_the_errors_each_sdk_family_expects() -> None:
    http, _ = client()
    assert error_of(http.get("/v1/projects/wk_nope/settings"), 404)["error"] == "unknown write key"
    for path in ("/sourceConfig", "/sourceConfig/?writeKey=wk_nope"):
        # RudderStack's mobile SDKs stop retrying on these words
        assert "invalid write key" in error_of(http.get(path), 401)["error"].lower()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/sourceConfig?p=android&v=1.28.0&bv=34", basic(KEY)),  # mobile SDKs: Basic auth, no slash
        (f"/sourceConfig/?p=npm&v=3.34.1&build=modern&writeKey={KEY}", {}),  # JavaScript v3: slash and query
    ],
)
def test_rudderstack_source_config_route_finds_the_key_where_each_sdk_puts_it(
    path: str, headers: dict[str, str]
) -> None:
    http, _ = client()
    r = http.get(path, headers=headers)
    assert r.status_code == 200, r.text  # no redirect between the two spellings
    assert r.json()["source"]["dataplanes"]["US"][0]["url"] == "http://cdp.test:8080"


@pytest.mark.parametrize(
    ("path", "event_type"),
    [("/v1/t", "track"), ("/v1/p", "page"), ("/v1/i", "identify"), ("/v1/s", "screen"), ("/v1/g", "group")],
)
def test_short_paths_reach_the_single_event_handler_with_their_type(path: str, event_type: str) -> None:
    http, s = client()
    body = {"anonymousId": "a1", "event": "E", "name": "N", "groupId": "g1", "writeKey": KEY, "type": "track"}
    r = http.post(path, content=orjson.dumps(body), headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert orjson.loads(sent(s)[0][2] or b"")["type"] == event_type


def test_alias_short_path() -> None:
    http, s = client()
    r = http.post("/v1/a", json={"userId": "u1", "previousId": "a1"}, headers=basic(KEY))
    assert r.status_code == 200, r.text
    assert orjson.loads(sent(s)[0][2] or b"")["type"] == "alias"


@pytest.mark.parametrize("path", ["/v1/b", "/v1/import", f"/beacon/v1/batch?writeKey={KEY}"])
def test_batch_paths_reach_the_batch_handler(path: str) -> None:
    http, s = client()
    batch = {"batch": [{"type": "track", "event": "E", "anonymousId": "a1"}, {"type": "page", "anonymousId": "a1"}]}
    if "beacon" not in path:
        batch["writeKey"] = KEY
    r = http.post(path, content=orjson.dumps(batch), headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2 and len(sent(s)) == 2


def test_write_key_in_the_query_must_still_be_known() -> None:
    http, s = client()
    r = http.post("/beacon/v1/batch?writeKey=wk_nope", content=b'{"batch": [{"type": "page", "anonymousId": "a"}]}')
    assert r.status_code == 401 and not sent(s)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/t", "authorization,content-type"),  # analytics-next: Basic auth on a text/plain fetch
        ("/v1/track", "authorization,anonymousid,content-type,sentat"),  # RudderStack v3's XHR queue
        ("/sourceConfig/", "authorization"),
    ],
)
def test_preflights_allow_the_headers_browser_sdks_add(path: str, headers: str) -> None:
    http, _ = client()
    r = http.options(
        path,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST" if path.startswith("/v1") else "GET",
            "Access-Control-Request-Headers": headers,
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] in ("*", "https://shop.example")
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert set(headers.split(",")) <= allowed
