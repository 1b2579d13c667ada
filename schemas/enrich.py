"""Enrichment of accepted events at the edge of the collector (pure functions).

Why here and not downstream: only the collector knows when an event arrived, from which address and
through which source; Kafka consumers must see the same facts on every replay, so they are stamped
once, before the event is produced. Everything here is a pure function of its arguments (plus a
random ``messageId`` when the client gave none), so it is trivial to test and safe to call from any
thread.

What is added, Segment-style:

* ``receivedAt`` (server clock), ``channel`` and ``sourceId`` (from the write key's source);
* ``messageId`` when missing, so downstream dedup always has a key;
* ``timestamp`` corrected for client clock skew: ``receivedAt - (sentAt - originalTimestamp)``, the
  client's own value is kept in ``originalTimestamp``;
* ``context.ip`` from the connection (unless the client set one, e.g. a server relaying a browser);
* ``context.geo.country``: the ISO country of that IP, looked up offline (see :func:`ip_country`), so the DMP
  side has a country when the context gives neither a location nor a locale, without ever storing the IP;
* ``context.ua``: the parsed ``context.userAgent`` (browser, OS, device, device type), completed from the
  mobile SDKs' own ``context.os`` and ``context.device.type`` where the user agent says nothing (an app's
  events often carry no user agent, or an HTTP library's).

``writeKey`` is removed: write keys identify sources and must not end up in the warehouse.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from iptocc import country_code as _ip_country_code
from ua_parser import parse as _ua_parse

from schemas.consent import stamp_consent
from schemas.segment import MIN_TIMESTAMP, parse_timestamp

__all__ = ["client_ip", "enrich", "format_timestamp", "ip_country", "parse_user_agent"]

# Longer user agents are truncated before parsing: real ones are < 512 bytes, and regex cost (and the
# cache's memory) must not be driven by whatever a client puts in the field.
_MAX_UA_CHARS: Final = 1024

_BOT_FAMILY = re.compile(r"bot|crawl|spider|slurp|headless|lighthouse|preview|scanner", re.IGNORECASE)
_TABLET_HINT = re.compile(r"tablet|ipad|kindle|silk|playbook|nexus (7|9|10)\b", re.IGNORECASE)
_MOBILE_OS: Final = frozenset(
    {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "Symbian OS", "Tizen"}
)
_DESKTOP_OS: Final = frozenset(
    {
        "Windows",
        "Mac OS X",
        "macOS",
        "Linux",
        "Ubuntu",
        "Debian",
        "Fedora",
        "Red Hat",
        "SUSE",
        "Chrome OS",
        "ChromeOS",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
    }
)


def format_timestamp(value: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and a ``Z`` (what Segment emits): ``2024-05-01T10:00:00.123Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ts_or_none(value: Any) -> datetime | None:
    """Parse a timestamp defensively: enrich may see unvalidated input, where junk counts as absent."""
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _version(*parts: str | None) -> str | None:
    """Join the known leading parts of a version ("17", "1", None) -> "17.1"."""
    known: list[str] = []
    for part in parts:
        if not part:
            break
        known.append(part)
    return ".".join(known) or None


def _device_type(ua: str, browser: str | None, os: str | None, device: str | None, brand: str | None) -> str:
    """Classify into mobile / tablet / desktop / bot / other.

    ua-parser gives families, not form factors, so this applies the usual conventions: crawlers are
    reported by ua-parser as the "Spider" device; iPads and Android devices whose UA lacks "Mobile"
    are tablets (Google's guidance for Android UAs); mobile OSes otherwise mean phones.
    """
    if device == "Spider" or (browser and _BOT_FAMILY.search(browser)):
        return "bot"
    if _TABLET_HINT.search(device or "") or _TABLET_HINT.search(brand or ""):
        return "tablet"
    if os == "Android" and "Mobile" not in ua:
        return "tablet"
    if os in _MOBILE_OS or device in ("iPhone", "iPod"):
        return "mobile"
    if os in _DESKTOP_OS:
        return "desktop"
    return "other"


@lru_cache(maxsize=8192)
def _parse_ua_cached(ua: str) -> tuple[tuple[str, str | None], ...]:
    """Parse one user-agent string; cached because a few thousand UAs make most of the traffic.

    Returns an immutable tuple so callers cannot corrupt the cache by mutating the result.
    """
    result = _ua_parse(ua)
    browser = result.user_agent.family if result.user_agent else None
    browser_version = (
        _version(result.user_agent.major, result.user_agent.minor, result.user_agent.patch)
        if result.user_agent
        else None
    )
    os = result.os.family if result.os else None
    os_version = _version(result.os.major, result.os.minor, result.os.patch) if result.os else None
    device = result.device.family if result.device else None
    brand = result.device.brand if result.device else None
    return (
        ("browser", browser),
        ("browser_version", browser_version),
        ("os", os),
        ("os_version", os_version),
        ("device", device),
        ("device_type", _device_type(ua, browser, os, device, brand)),
    )


def parse_user_agent(user_agent: str) -> dict[str, str | None]:
    """Parse a User-Agent into ``{browser, browser_version, os, os_version, device, device_type}``.

    Unknown parts are ``None``; ``device_type`` is always one of mobile, tablet, desktop, bot, other.
    """
    return dict(_parse_ua_cached(user_agent[:_MAX_UA_CHARS]))


# context.device.type as the mobile SDKs write it (Segment: "ios" / "android"; RudderStack: "iOS" / "Android"),
# lower-cased: a platform, not a form factor, so a phone unless the model says tablet.
_MOBILE_PLATFORMS: Final = frozenset({"ios", "ipados", "android", "mobile", "phone", "watchos", "wearos"})
_UA_FIELDS: Final = ("browser", "browser_version", "os", "os_version", "device", "device_type")
_OS_NAMES: Final = {"ios": "iOS", "ipados": "iOS", "android": "Android"}


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _app_device(context: Mapping[str, Any], ua: dict[str, str | None]) -> dict[str, str | None]:
    """``ua`` completed from the SDK's ``context.os.name`` / ``.version`` and ``context.device.type`` / ``.model``:
    they fill what the user agent left unknown (absent, ``Other``, device type ``other``), never override it."""
    os_ctx = context.get("os")
    device_ctx = context.get("device")
    os_ctx = os_ctx if isinstance(os_ctx, Mapping) else {}
    device_ctx = device_ctx if isinstance(device_ctx, Mapping) else {}
    out: dict[str, str | None] = dict.fromkeys(_UA_FIELDS) | ua
    os_name = _text(os_ctx.get("name"))
    if os_name and out.get("os") in (None, "Other"):
        out["os"] = _OS_NAMES.get(os_name.lower(), os_name)
        out["os_version"] = _text(os_ctx.get("version")) or out.get("os_version")
    platform = (_text(device_ctx.get("type")) or "").lower()
    model = _text(device_ctx.get("model")) or ""
    if platform and out.get("device_type") in (None, "other"):
        if platform == "tablet" or (platform in _MOBILE_PLATFORMS and _TABLET_HINT.search(model)):
            out["device_type"] = "tablet"
        elif platform in _MOBILE_PLATFORMS:
            out["device_type"] = "mobile"
        elif platform in ("desktop", "macos", "windows", "linux"):
            out["device_type"] = "desktop"
    if model and not out.get("device"):
        out["device"] = model
    return out


def ip_country(ip: str) -> str | None:
    """The ISO 3166-1 alpha-2 country of an IP address, or None (private, reserved, unknown, not an address).

    iptocc: the regional internet registries' delegation files compiled into the wheel, so the lookup needs no
    network, no account and no database download at start (MaxMind's GeoLite2 needs a licence key for each
    download; geoip2fast ships country data too, but its last release is older); a new release follows the
    registries' data, so upgrading the package refreshes it. Country only: region and city need a city database,
    which no offline package ships, so the region stays what ``context.location`` says."""
    try:
        code = _ip_country_code(ip)
    except (ValueError, TypeError):
        return None
    return code if isinstance(code, str) and len(code) == 2 else None


def _corrected_timestamp(event: Mapping[str, Any], received_at: datetime) -> tuple[datetime, Any]:
    """Segment's clock-skew correction; returns (timestamp, client's original timestamp or None).

    With ``sentAt`` the client's clock offset cancels out: the event happened ``sentAt - original``
    before it was sent, and it was sent (about) when we received it. Without ``sentAt`` a client
    timestamp is taken as is (server-side libraries and historical imports set it on purpose), and
    without any timestamp the event happened when we received it. A result in the future of
    ``receivedAt`` (original after sentAt: a confused client) is clamped to ``receivedAt``, since an
    event cannot happen after it arrived.
    """
    raw_original = event.get("originalTimestamp")
    if raw_original is None:
        raw_original = event.get("timestamp")
    original = _ts_or_none(raw_original)
    sent_at = _ts_or_none(event.get("sentAt"))
    if original is None:
        return received_at, None
    if sent_at is None:
        return original, raw_original
    try:
        corrected = received_at - (sent_at - original)
    except OverflowError:  # nonsense clocks (parse_timestamp bounds them, but enrich may see unvalidated input)
        return received_at, raw_original
    if corrected < MIN_TIMESTAMP:  # ditto: a "correction" of centuries is a broken client, not a real delay
        return received_at, raw_original
    return min(corrected, received_at), raw_original


def enrich(
    event: Mapping[str, Any],
    *,
    received_at: datetime,
    client_ip: str | None,
    channel: str,
    source_id: str,
    consent_default: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    """Return a new, enriched copy of a validated Segment event dict (the input is not modified).

    ``received_at`` is the server's clock when the request arrived (naive = UTC); ``client_ip`` is the
    address from :func:`client_ip`; ``channel`` and ``source_id`` come from the write key's source and
    override whatever the client claimed. ``consent_default`` is the source's consent for events without a
    consent object (schemas/consent.py: the built-in default when None).
    """
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=UTC)
    out: dict[str, Any] = dict(event)
    out.pop("writeKey", None)

    timestamp, original = _corrected_timestamp(event, received_at)
    out["receivedAt"] = format_timestamp(received_at)
    out["timestamp"] = format_timestamp(timestamp)
    if out.get("originalTimestamp") is None and original is not None:
        out["originalTimestamp"] = original
    for key in ("originalTimestamp", "sentAt"):
        if isinstance(out.get(key), datetime):
            out[key] = format_timestamp(out[key])

    message_id = out.get("messageId")
    if message_id is None or (isinstance(message_id, str) and not message_id.strip()):
        out["messageId"] = str(uuid.uuid4())
    out["channel"] = channel
    out["sourceId"] = source_id

    raw_context = event.get("context")
    context: dict[str, Any] = dict(raw_context) if isinstance(raw_context, Mapping) else {}
    if client_ip and not context.get("ip"):
        context["ip"] = client_ip
    ip = context.get("ip")
    country = ip_country(ip) if isinstance(ip, str) and ip else None
    if country is not None:
        geo = context.get("geo")
        context["geo"] = {**(geo if isinstance(geo, Mapping) else {}), "country": country}
    user_agent = context.get("userAgent")
    parsed = parse_user_agent(user_agent) if isinstance(user_agent, str) and user_agent.strip() else {}
    ua = _app_device(context, parsed) if "os" in context or "device" in context else parsed
    if any(ua.values()):
        context["ua"] = ua
    stamp_consent(context, consent_default)
    out["context"] = context
    return out


def _normalise_ip(value: str) -> str | None:
    """Return a canonical IP string, or None if ``value`` is not an address.

    Accepts forms proxies actually send: ``1.2.3.4:5678``, ``[2001:db8::1]:443``, quoted values;
    IPv4-mapped IPv6 (``::ffff:1.2.3.4``, from dual-stack sockets) is reported as plain IPv4.
    """
    text = value.strip().strip('"').strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # IPv4 with a port; IPv6 has at least two colons
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that works for Starlette Headers and plain dicts."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, val in headers.items():
        if key.lower() == name:
            return val
    return None


def client_ip(headers: Mapping[str, str], peer: str | None, trust_forwarded_for: bool) -> str | None:
    """The client's address: the leftmost X-Forwarded-For entry when a trusted proxy sets it, else the peer.

    X-Forwarded-For is written by the client as much as by proxies, so it is only believed when the
    deployment says a proxy in front overwrites it (``trust_forwarded_for``); otherwise anyone could
    choose the IP (and so the geolocation) stored with their events. Values that are not IP addresses
    (``unknown``, a test client's ``testclient``) give None rather than junk in ``context.ip``.
    """
    if trust_forwarded_for:
        forwarded = _header(headers, "x-forwarded-for")
        if forwarded:
            leftmost = _normalise_ip(forwarded.split(",", 1)[0])
            if leftmost is not None:
                return leftmost
    if peer is None:
        return None
    return _normalise_ip(peer)
