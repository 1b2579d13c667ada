"""The mobile SDKs that cannot run here (Android, iOS, React Native), replayed request by request as their source
shows them, against a running cdp: the settings fetch and what the SDK reads from it, then the batch upload
with the SDK's path, headers, compression and body, answered with the status the SDK treats as delivered.

Each replay names the SDK release whose source it follows (the README's compatibility table has the same rows).
The SDKs build https:// URLs from the host in the settings document; the replays keep that host and path and
only use the test stack's plain http. Every replay sends a screen and a track as an anonymous device, then an
identify: the events must be in ``cdp.events`` with channel ``mobile``, and the device's anonymous id, its
device id and the user id must end as one profile.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.fixtures import in_list, now_iso
from tests.support.service import ROOT, CdpProcess

pytestmark = pytest.mark.e2e
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def cdp(shared_cdp: CdpProcess) -> CdpProcess:
    return shared_cdp


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@dataclass
class Device:
    """One app install: what the SDK keeps (anonymous id, device id) and the user who logs in."""

    sdk: str
    anonymous_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    device_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    user_id: str = field(default_factory=lambda: f"u-{uuid.uuid4().hex[:10]}")
    message_ids: list[str] = field(default_factory=list)

    def message_id(self) -> str:
        mid = str(uuid.uuid4())
        self.message_ids.append(mid)
        return mid


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def chunks(data: bytes, size: int = 1024) -> Iterator[bytes]:
    """A streamed body (Transfer-Encoding: chunked), as HttpURLConnection sends with setChunkedStreamingMode(0)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


# ------------------------------------------------------------------------------------------ Segment's SDKs


def segment_settings(http: httpx.Client, cdp: CdpProcess, url: str, headers: dict[str, str]) -> str:
    """GET the settings document as the SDK does; the host it will post to (``integrations.Segment.io.apiHost``)."""
    r = http.get(url, headers=headers)
    assert r.status_code == 200, r.text  # every Segment SDK treats anything else as "no settings"
    segment = r.json()["integrations"]["Segment.io"]
    assert segment["apiKey"] == cdp.write_keys["mobile"]
    api_host = segment["apiHost"]
    assert api_host == cdp.url.removeprefix("http://") + "/v1", api_host
    return str(api_host)


def segment_events(device: Device, library: dict[str, str], os_name: str, **extra: Any) -> list[dict[str, Any]]:
    """Screen, track, identify as Segment's mobile SDKs store them (BasePayload / BaseEvent fields)."""
    context = {
        "app": {"name": "Acme", "version": "3.2.1", "build": "321", "namespace": "com.acme.app"},
        "device": {"id": device.device_id, "manufacturer": "Acme", "model": "Phone 9", "type": os_name.lower()},
        "library": library,
        "locale": "en-GB",
        "network": {"wifi": True, "cellular": False},
        "os": {"name": os_name, "version": "14"},
        "screen": {"width": 1080, "height": 2340, "density": 2.75},
        "timezone": "Europe/London",
        "traits": {"anonymousId": device.anonymous_id},
    }
    common = {"channel": "mobile", "anonymousId": device.anonymous_id, "integrations": {}, "context": context, **extra}
    return [
        {**common, "type": "screen", "name": "Home", "properties": {}, "messageId": device.message_id(),
         "timestamp": now_iso(-3)},
        {**common, "type": "track", "event": "Product Viewed", "properties": {"sku": "X1"},
         "messageId": device.message_id(), "timestamp": now_iso(-2)},
        {**common, "type": "identify", "userId": device.user_id,
         "traits": {"email": f"{device.user_id}@example.com", "anonymousId": device.anonymous_id},
         "messageId": device.message_id(), "timestamp": now_iso(-1)},
    ]  # fmt: skip


def segment_file(events: list[dict[str, Any]], write_key: str, *, space: bool = False) -> bytes:
    """The batch file the SDK writes and uploads as it is: ``{"batch":[...],"sentAt":"...","writeKey":"..."}``."""
    start = '{ "batch": [' if space else '{"batch":['
    body = start + ",".join(json.dumps(e) for e in events) + f'],"sentAt":"{now_iso()}","writeKey":"{write_key}"}}'
    return body.encode()


def analytics_android(http: httpx.Client, cdp: CdpProcess, device: Device) -> None:
    """segmentio/analytics-android 4.11.4 (ConnectionFactory.java, Client.java, SegmentIntegration.java): settings
    from cdn-settings (ConnectionFactory.projectSettings, overridden to point here), then POST {apiHost}/import,
    gzip, chunked, no Authorization (the write key is in the body); 4xx but 429 drops the batch, anything else
    >= 300 keeps it for a retry."""
    ua = {"User-Agent": "analytics-android/4.11.4", "Content-Type": "application/json"}
    key = cdp.write_keys["mobile"]
    api_host = segment_settings(http, cdp, f"{cdp.url}/v1/projects/{key}/settings", ua)
    events = segment_events(device, {"name": "analytics-android", "version": "4.11.4"}, "Android")
    r = http.post(
        f"http://{api_host}/import",
        content=chunks(gzip.compress(segment_file(events, key))),
        headers={**ua, "Content-Encoding": "gzip"},
    )
    assert r.status_code < 300, r.text


def analytics_ios(http: httpx.Client, cdp: CdpProcess, device: Device) -> None:
    """segmentio/analytics-ios 4.1.8 (SEGHTTPClient.m, SEGSegmentIntegration.m, SEGIntegrationsManager.m): settings
    from cdn-settings (requestFactory rewrites the URL to here), apiHost saved from them; POST {apiHost}/batch,
    gzip body of a JSON dictionary with sentAt, writeKey and batch, no Authorization; < 300 done, 3xx, 429 and 5xx
    retried, other 4xx dropped."""
    key = cdp.write_keys["mobile"]
    ua = {"User-Agent": "analytics-ios/4.1.8", "Accept-Encoding": "gzip"}
    api_host = segment_settings(http, cdp, f"{cdp.url}/v1/projects/{key}/settings", ua)
    events = segment_events(device, {"name": "analytics-ios", "version": "4.1.8"}, "iOS")
    body = json.dumps({"sentAt": now_iso(), "writeKey": key, "batch": events}).encode()
    r = http.post(
        f"http://{api_host}/batch",
        content=gzip.compress(body),
        headers={**ua, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code < 300, r.text


def analytics_kotlin(http: httpx.Client, cdp: CdpProcess, device: Device) -> None:
    """segmentio/analytics-kotlin 1.25.0 (HTTPClient.kt, EventPipeline.kt, SegmentDestination.kt, StorageImpl.kt;
    its Constants.kt still says 1.24.1, so do its User-Agent and context.library): GET https://{cdnHost}/projects/
    {key}/settings, the apiHost found there replaces the configured one; POST https://{apiHost}/b with
    Content-Type text/plain, gzip, chunked, the batch file as stored (userId "" until identified, _metadata)."""
    key = cdp.write_keys["mobile"]
    ua = {"User-Agent": "analytics-kotlin/1.24.1"}
    cdn_host = cdp.url.removeprefix("http://") + "/v1"  # Configuration(cdnHost = "cdp.example.com/v1")
    api_host = segment_settings(
        http,
        cdp,
        f"http://{cdn_host}/projects/{key}/settings",
        {**ua, "Content-Type": "application/json; charset=utf-8"},
    )
    metadata = {"bundled": [], "unbundled": [], "bundledIds": []}
    events = segment_events(
        device, {"name": "analytics-kotlin", "version": "1.24.1"}, "Android", userId="", _metadata=metadata
    )
    events[-1]["userId"] = device.user_id
    r = http.post(
        f"http://{api_host}/b",
        content=chunks(gzip.compress(segment_file(events, key))),
        headers={**ua, "Content-Type": "text/plain", "Content-Encoding": "gzip"},
    )
    assert r.status_code < 300, r.text


def analytics_swift(http: httpx.Client, cdp: CdpProcess, device: Device) -> None:
    """segmentio/analytics-swift 1.9.4 (HTTPClient.swift, SegmentDestination.swift, DirectoryStore.swift): GET
    https://{cdnHost}/projects/{key}/settings, apiHost from them; POST https://{apiHost}/b, JSON, not compressed,
    the batch file as stored (``{ "batch": [``...); the User-Agent says analytics-ios; without httpConfig only
    a 400 drops the batch."""
    key = cdp.write_keys["mobile"]
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "analytics-ios/1.9.4",
        "Accept-Encoding": "gzip",
    }
    cdn_host = cdp.url.removeprefix("http://") + "/v1"
    api_host = segment_settings(http, cdp, f"http://{cdn_host}/projects/{key}/settings", headers)
    events = segment_events(device, {"name": "analytics-swift", "version": "1.9.4"}, "iOS")
    r = http.post(f"http://{api_host}/b", content=segment_file(events, key, space=True), headers=headers)
    assert r.status_code < 300, r.text


def analytics_react_native(http: httpx.Client, cdp: CdpProcess, device: Device) -> None:
    """segmentio/analytics-react-native 2.21.4 (packages/core: analytics.ts fetchSettings, api.ts uploadEvents,
    plugins/SegmentDestination.ts): with cdnProxy and proxy set to cdp and useSegmentEndpoints, GET {cdnProxy}/
    projects/{key}/settings (Cache-Control: no-cache), POST {proxy}/b, JSON (fetch, keepalive), write key in the
    body; 408, 410, 429, 460 and 5xx but 501/505 retried, other 4xx dropped."""
    key = cdp.write_keys["mobile"]
    proxy = f"{cdp.url}/v1"
    segment_settings(http, cdp, f"{proxy}/projects/{key}/settings", {"Cache-Control": "no-cache"})
    events = segment_events(device, {"name": "@segment/analytics-react-native", "version": "2.21.4"}, "iOS")
    body = json.dumps({"batch": events, "sentAt": now_iso(), "writeKey": key})
    r = http.post(f"{proxy}/b", content=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code < 300, r.text


# --------------------------------------------------------------------------------------- RudderStack's SDKs


def rudderstack_config(http: httpx.Client, cdp: CdpProcess, query: str) -> str:
    """GET {controlPlaneUrl}/sourceConfig?... with Basic auth; the data plane the SDK then posts to."""
    r = http.get(f"{cdp.url}/sourceConfig?{query}", headers={"Authorization": basic(cdp.write_keys["mobile"])})
    assert r.status_code == 200, r.text
    source = r.json()["source"]
    # The mobile SDKs stay silent unless the source is enabled; they read id, config and destinations.
    assert source["enabled"] is True and source["id"] and isinstance(source["config"], dict)
    assert source["destinations"] == []
    planes = [p for p in source["dataplanes"]["US"] if p["default"]]  # the default region (US) wins over the
    assert len(planes) == 1  # data plane URL configured in the app
    return str(planes[0]["url"])


def rudderstack_events(device: Device, library: dict[str, str], os_name: str) -> list[dict[str, Any]]:
    """Screen, track, identify as RudderStack's mobile SDKs store them (RudderMessage / RSMessage): the client
    time is ``originalTimestamp``, traits travel in ``context.traits``, integrations default to All."""
    sent_at = now_iso()
    context = {
        "app": {"name": "Acme", "version": "3.2.1", "build": "321", "namespace": "com.acme.app"},
        "device": {
            "id": device.device_id,
            "manufacturer": "Acme",
            "model": "Phone 9",
            "name": "phone",
            "type": os_name,
        },
        "library": library,
        "locale": "en-GB",
        "network": {"wifi": True, "carrier": "Acme Mobile"},
        "os": {"name": os_name, "version": "14"},
        "screen": {"width": 1080, "height": 2340, "density": 2},
        "timezone": "Europe/London",
        "traits": {"anonymousId": device.anonymous_id},
        "sessionId": int(time.time() * 1000),
    }
    common = {"channel": "mobile", "anonymousId": device.anonymous_id, "integrations": {"All": True}}
    identified = {
        **context,
        "traits": {**context["traits"], "userId": device.user_id, "email": f"{device.user_id}@example.com"},
    }
    return [
        {**common, "context": context, "type": "screen", "event": "Home", "properties": {"name": "Home"},
         "messageId": device.message_id(), "originalTimestamp": now_iso(-3), "sentAt": sent_at},
        {**common, "context": context, "type": "track", "event": "Product Viewed", "properties": {"sku": "X1"},
         "messageId": device.message_id(), "originalTimestamp": now_iso(-2), "sentAt": sent_at},
        {**common, "context": identified, "type": "identify", "userId": device.user_id, "event": "identify",
         "messageId": device.message_id(), "originalTimestamp": now_iso(-1), "sentAt": sent_at},
    ]  # fmt: skip


def rudderstack_upload(http: httpx.Client, cdp: CdpProcess, plane: str, device: Device, body: bytes) -> None:
    r = http.post(
        f"{plane.rstrip('/')}/v1/batch",
        content=gzip.compress(body),
        headers={
            "Authorization": basic(cdp.write_keys["mobile"]),
            "Content-Type": "application/json",
            "AnonymousId": base64.b64encode(device.anonymous_id.encode()).decode(),
            "Content-Encoding": "gzip",
        },
    )
    assert r.status_code == 200, r.text  # exactly 200: any other status is retried (or, 400/404, retried every 1 s)


def rudder_android(http: httpx.Client, cdp: CdpProcess, device: Device) -> None:
    """rudderlabs/rudder-sdk-android 1.28.0 (RudderServerConfigManager.java, RudderNetworkManager.java,
    RudderCloudModeManager.java, FlushUtils.java): GET {controlPlaneUrl}/sourceConfig?p=android&v=1.28.0&bv=SDK_INT,
    then POST {dataPlaneUrl}/v1/batch, Basic auth, base64 AnonymousId header, gzip (on by default); the body is
    ``{"sentAt":...,"batch":[...]}`` with sentAt copied into every message."""
    plane = rudderstack_config(http, cdp, "p=android&v=1.28.0&bv=34")
    events = rudderstack_events(device, {"name": "com.rudderstack.android.sdk.core", "version": "1.28.0"}, "Android")
    body = f'{{"sentAt":"{now_iso()}","batch": [' + ",".join(json.dumps(e) for e in events) + "]}"
    rudderstack_upload(http, cdp, plane, device, body.encode())


def rudder_ios(http: httpx.Client, cdp: CdpProcess, device: Device) -> None:
    """rudderlabs/rudder-sdk-ios 1.31.0 (RSServerConfigManager.m, RSNetworkManager.m, RSCloudModeManager.m):
    GET {controlPlaneUrl}/sourceConfig?p=ios&v=1.31.0, then POST {dataPlaneUrl}/v1/batch with the same headers
    and gzip (RSGzipStatus YES) as the Android SDK, and the same body shape."""
    plane = rudderstack_config(http, cdp, "p=ios&v=1.31.0")
    events = rudderstack_events(device, {"name": "rudder-ios-library", "version": "1.31.0"}, "iOS")
    body = f'{{"sentAt":"{now_iso()}","batch":[' + ",".join(json.dumps(e) for e in events) + "]}"
    rudderstack_upload(http, cdp, plane, device, body.encode())


REPLAYS: dict[str, Callable[[httpx.Client, CdpProcess, Device], None]] = {
    "analytics-android 4.11.4": analytics_android,
    "analytics-ios 4.1.8": analytics_ios,
    "analytics-kotlin 1.25.0": analytics_kotlin,
    "analytics-swift 1.9.4": analytics_swift,
    "analytics-react-native 2.21.4": analytics_react_native,
    "rudder-sdk-android 1.28.0": rudder_android,
    "rudder-sdk-ios 1.31.0": rudder_ios,
}


def wait_one_profile(cdp: CdpProcess, device: Device, timeout: float = 60) -> None:
    wanted = {
        ("anonymous_id", device.anonymous_id),
        ("device_id", device.device_id),
        ("user_id", device.user_id),
        ("email", f"{device.user_id}@example.com"),
    }
    condition = " OR ".join(f"(id_type = '{t}' AND id_value = {in_list([v])})" for t, v in sorted(wanted))
    query = f"SELECT groupUniqArray(profile_id), count() FROM cdp.identities WHERE {condition}"
    deadline = time.monotonic() + timeout
    profiles, found = [], 0
    while time.monotonic() < deadline:
        profiles, found = cdp.sql(query)[0]
        if found == len(wanted) and len(profiles) == 1:
            return
        time.sleep(0.2)
    raise AssertionError(f"{device.sdk}: {found}/{len(wanted)} identifiers, profiles {profiles}")


@pytest.mark.parametrize("sdk", list(REPLAYS))
def test_mobile_sdk_replay_is_stored_and_stitched(sdk: str, cdp: CdpProcess, http: httpx.Client) -> None:
    device = Device(sdk)
    REPLAYS[sdk](http, cdp, device)
    ids = in_list(device.message_ids)
    cdp.wait_for(f"SELECT count() FROM cdp.events WHERE message_id IN ({ids})", len(device.message_ids))
    rows = cdp.sql(
        f"SELECT message_id, type, channel, anonymous_id, user_id FROM cdp.events WHERE message_id IN ({ids})"
    )
    by_id = {r[0]: r[1:] for r in rows}
    assert [by_id[m][0] for m in device.message_ids] == ["screen", "track", "identify"]
    assert {by_id[m][1] for m in device.message_ids} == {"mobile"}
    assert {by_id[m][2] for m in device.message_ids} == {device.anonymous_id}
    assert by_id[device.message_ids[-1]][3] == device.user_id
    wait_one_profile(cdp, device)


def test_every_replay_has_its_row_in_the_readme_compatibility_table() -> None:
    table = README.read_text().split("### SDK compatibility", 1)[1].split("\n\n", 2)[2]
    for sdk in REPLAYS:
        name, version = sdk.split()
        assert re.search(rf"^\| `[a-z]+/{re.escape(name)}` {re.escape(version)}\b", table, re.M), sdk
