"""Edge enrichment: clock-skew correction, ids, IP rules, user-agent parsing."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.enrich import client_ip, enrich, format_timestamp, parse_user_agent
from schemas.segment import parse_event

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)

CHROME_DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)


def run(event: dict[str, Any], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "received_at": RECEIVED,
        "client_ip": "203.0.113.7",
        "channel": "online",
        "source_id": "src1",
    }
    args.update(kw)
    return enrich(event, **args)


# ---------------------------------------------------------------------------------------------
# timestamps
# ---------------------------------------------------------------------------------------------


def test_clock_skew_correction() -> None:
    # The device clock is 1 hour behind; the event happened 10 s before the SDK sent it.
    event = {
        "type": "track",
        "timestamp": "2024-05-01T10:59:50.000Z",
        "sentAt": "2024-05-01T11:00:00.000Z",
    }
    out = run(event)
    assert out["receivedAt"] == "2024-05-01T12:00:00.500Z"
    assert out["timestamp"] == "2024-05-01T11:59:50.500Z"  # receivedAt - (sentAt - timestamp)
    assert out["originalTimestamp"] == "2024-05-01T10:59:50.000Z"  # the client's value is kept
    assert out["sentAt"] == "2024-05-01T11:00:00.000Z"


def test_original_timestamp_preferred_and_offsets_handled() -> None:
    event = {
        "type": "track",
        "originalTimestamp": "2024-05-01T13:00:00+02:00",  # 11:00:00Z
        "timestamp": "2000-01-01T00:00:00Z",
        "sentAt": "2024-05-01T11:00:02.250Z",
    }
    out = run(event)
    assert out["timestamp"] == "2024-05-01T11:59:58.250Z"
    assert out["originalTimestamp"] == "2024-05-01T13:00:00+02:00"


def test_timestamp_without_sent_at_is_kept() -> None:
    # server-side libraries and historical imports set timestamp on purpose, with no sentAt
    out = run({"type": "track", "timestamp": "2023-01-02T03:04:05.678+01:00"})
    assert out["timestamp"] == "2023-01-02T02:04:05.678Z"
    assert out["originalTimestamp"] == "2023-01-02T03:04:05.678+01:00"


def test_no_timestamp_means_received_at() -> None:
    out = run({"type": "track", "sentAt": "2024-05-01T11:00:00Z"})
    assert out["timestamp"] == out["receivedAt"] == "2024-05-01T12:00:00.500Z"
    assert "originalTimestamp" not in out


def test_future_timestamp_clamped_to_received_at() -> None:
    out = run({"type": "track", "timestamp": "2024-05-01T11:00:10Z", "sentAt": "2024-05-01T11:00:00Z"})
    assert out["timestamp"] == out["receivedAt"]


def test_naive_received_at_is_utc_and_ms_format() -> None:
    out = run({"type": "page"}, received_at=datetime(2024, 5, 1, 12, 0, 0, 123456))
    assert out["receivedAt"] == "2024-05-01T12:00:00.123Z"
    assert format_timestamp(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00.000Z"


def test_works_on_a_dumped_model() -> None:
    model = parse_event(
        {
            "userId": 5,
            "event": "e",
            "timestamp": "2024-05-01T11:59:00Z",
            "sentAt": "2024-05-01T11:59:30Z",
            "writeKey": "wk",
        },
        "track",
    )
    out = run(model.model_dump(by_alias=True, exclude_none=True, mode="json"))
    assert out["timestamp"] == "2024-05-01T11:59:30.500Z"
    # and on a python-mode dump, where timestamps are datetime objects
    out2 = run(model.model_dump(by_alias=True, exclude_none=True))
    assert out2["timestamp"] == out["timestamp"]
    assert isinstance(out2["originalTimestamp"], str) and isinstance(out2["sentAt"], str)


# ---------------------------------------------------------------------------------------------
# ids, channel, source, writeKey
# ---------------------------------------------------------------------------------------------


def test_missing_message_id_generated() -> None:
    out = run({"type": "track"})
    assert uuid.UUID(out["messageId"]).version == 4
    assert run({"type": "track", "messageId": ""})["messageId"] != ""
    assert run({"type": "track"})["messageId"] != out["messageId"]


def test_existing_message_id_kept() -> None:
    assert run({"type": "track", "messageId": "ajs-123"})["messageId"] == "ajs-123"


def test_channel_source_and_write_key() -> None:
    out = run({"type": "track", "channel": "browser", "writeKey": "wk_secret"}, channel="mobile", source_id="app")
    assert out["channel"] == "mobile"
    assert out["sourceId"] == "app"
    assert "writeKey" not in out


def test_input_not_modified() -> None:
    event = {"type": "track", "writeKey": "k", "context": {"userAgent": CHROME_DESKTOP, "traits": {"a": 1}}}
    before = copy.deepcopy(event)
    out = run(event)
    assert event == before
    assert out["context"] is not event["context"]
    assert out["context"]["traits"] == {"a": 1}


# ---------------------------------------------------------------------------------------------
# IP
# ---------------------------------------------------------------------------------------------


def test_context_ip_from_connection() -> None:
    assert run({"type": "track"})["context"]["ip"] == "203.0.113.7"


def test_client_supplied_context_ip_wins() -> None:
    out = run({"type": "track", "context": {"ip": "198.51.100.1"}})
    assert out["context"]["ip"] == "198.51.100.1"


def test_no_ip_known() -> None:
    out = run({"type": "track"}, client_ip=None)
    assert "context" not in out or "ip" not in out["context"]


def test_forwarded_for_only_when_trusted() -> None:
    headers = {"X-Forwarded-For": "198.51.100.9, 10.0.0.2, 10.0.0.1"}
    assert client_ip(headers, "10.0.0.1", trust_forwarded_for=True) == "198.51.100.9"
    assert client_ip(headers, "10.0.0.1", trust_forwarded_for=False) == "10.0.0.1"
    assert client_ip({"x-forwarded-for": "198.51.100.9"}, "10.0.0.1", True) == "198.51.100.9"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("unknown, 198.51.100.9", "10.0.0.1"),  # junk leftmost: fall back to the peer, not a later hop
        ("198.51.100.9:5678", "198.51.100.9"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ('"2001:DB8::1"', "2001:db8::1"),
        ("::ffff:198.51.100.9", "198.51.100.9"),
        ("", "10.0.0.1"),
    ],
)
def test_forwarded_for_forms(forwarded: str, expected: str) -> None:
    assert client_ip({"x-forwarded-for": forwarded}, "10.0.0.1", True) == expected


def test_peer_only() -> None:
    assert client_ip({}, "192.0.2.4", True) == "192.0.2.4"
    assert client_ip({}, None, True) is None
    assert client_ip({}, "testclient", False) is None


# ---------------------------------------------------------------------------------------------
# user agent
# ---------------------------------------------------------------------------------------------


def test_chrome_desktop() -> None:
    ua = run({"type": "page", "context": {"userAgent": CHROME_DESKTOP}})["context"]["ua"]
    assert ua == {
        "browser": "Chrome",
        "browser_version": "120.0.0",
        "os": "Windows",
        "os_version": "10",
        "device": None,
        "device_type": "desktop",
    }


def test_iphone_safari() -> None:
    ua = parse_user_agent(IPHONE_SAFARI)
    assert ua["browser"] == "Mobile Safari"
    assert ua["browser_version"] == "17.1"
    assert (ua["os"], ua["os_version"]) == ("iOS", "17.1")
    assert ua["device"] == "iPhone"
    assert ua["device_type"] == "mobile"


def test_googlebot() -> None:
    ua = parse_user_agent(GOOGLEBOT)
    assert ua["browser"] == "Googlebot"
    assert ua["device_type"] == "bot"


@pytest.mark.parametrize(
    ("user_agent", "device_type"),
    [(IPAD, "tablet"), (ANDROID_TABLET, "tablet"), ("curl/8.4.0", "other"), ("", "other")],
)
def test_device_types(user_agent: str, device_type: str) -> None:
    assert parse_user_agent(user_agent)["device_type"] == device_type


def test_ua_results_cannot_poison_cache() -> None:
    first = parse_user_agent(CHROME_DESKTOP)
    first["browser"] = "tampered"
    assert parse_user_agent(CHROME_DESKTOP)["browser"] == "Chrome"


def test_no_user_agent_no_ua_field() -> None:
    out = run({"type": "track", "context": {"library": {"name": "analytics-python"}}})
    assert "ua" not in out["context"]
    assert run({"type": "track", "context": {"userAgent": 5}})["context"].get("ua") is None


def test_huge_user_agent_is_truncated_for_parsing() -> None:
    ua = parse_user_agent(CHROME_DESKTOP + " x" * 100_000)
    assert ua["browser"] == "Chrome"


def test_mobile_sdk_context_fills_what_the_user_agent_does_not_say() -> None:
    """An Android screen without a user agent, and one whose user agent (an HTTP library's) says nothing: the SDK's
    own context.os.name and context.device.type give the OS and device type; a browser's user agent still wins."""
    app = {"os": {"name": "Android", "version": "14"}, "device": {"type": "android", "model": "Pixel 8"}}
    for context in (app, {**app, "userAgent": "okhttp/4.12.0"}):
        ua = run({"type": "screen", "name": "Home", "context": context})["context"]["ua"]
        assert (ua["os"], ua["os_version"], ua["device_type"]) == ("Android", "14", "mobile")
    ipad = {"os": {"name": "iOS"}, "device": {"type": "ios", "model": "iPad13,4"}}
    assert run({"type": "screen", "context": ipad})["context"]["ua"]["device_type"] == "tablet"
    web = run({"type": "page", "context": {**app, "userAgent": IPHONE_SAFARI}})["context"]["ua"]
    assert (web["os"], web["device_type"]) == ("iOS", "mobile")


def test_the_country_of_the_client_ip_is_stamped_offline() -> None:
    assert run({"type": "page"}, client_ip="81.2.69.160")["context"]["geo"] == {"country": "GB"}
    relayed = {"ip": "2a01:cb00::1", "geo": {"city": "Lyon"}}  # a server relaying a browser's address
    assert run({"type": "page", "context": relayed})["context"]["geo"] == {"city": "Lyon", "country": "FR"}
    assert "geo" not in run({"type": "page"}, client_ip="10.0.0.1")["context"]  # private: no country
