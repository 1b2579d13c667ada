"""Seeded generator of synthetic customers with known ground truth.

Every synthetic person is generated on its own from a random generator seeded by ``(seed, person index)``,
so the output is reproducible, any slice of people can be generated on its own (parallel producers), and
memory stays O(1) in the number of people: events are yielded person by person (within one person sorted by
time; the stream as a whole is *not* globally time-ordered, which also exercises order-independent stitching).

Events follow the Segment spec (camelCase JSON): ``type`` is one of track / identify / page / screen / alias
and each event has ``messageId`` (deterministic UUID), ``timestamp`` (ISO-8601 UTC with milliseconds,
``2026-01-01T10:00:00.123Z``), ``context`` and ``properties`` / ``traits``.  Every event also carries a
private key ``_truth`` that callers must strip before sending (see :func:`strip_truth`)::

    "_truth": {"person": "p000123",            # who really produced the event
               "channel": "online" | "mobile" | "offline",
               "source": "web" | "app" | "till" | "crm",
               "shared": ["device_id:...", "anonymous_id:..."]}  # identifiers of a shared family device

Journeys
--------
* **web**: 1-4 cookies (``anonymousId``) per person, each with 1-3 sessions of page views (``/``,
  ``/pricing``, ``/products/<slug>``, ``/cart``, ...) and e-commerce tracks (Product Viewed with category,
  Product Added, Checkout Started, Order Completed with order_id, revenue, currency, products).  People who
  identify (about 60 %) log in on their first cookie (``identify`` with userId + traits on the same
  anonymousId: e-mail in varied spelling such as ``"  John.Doe@Example.COM "``, phone in varied formats,
  loyalty_id, ...); other cookies are linked by a later login (identify), by ``alias`` (previousId = the
  cookie's anonymousId -> userId) or never.
* **app**: app users have 1-2 devices (``context.device`` id/advertisingId/type/manufacturer/model,
  ``context.os``, ``context.app``) with ``screen`` events and tracks; they log in on each device.
* **shared family devices**: people ``2k`` and ``2k+1`` form a household; in a share of households both
  use one device (same device id, advertising id and app anonymousId) and both log in on it with their own
  userIds.  Those identifiers belong to no single person and are left out of the truth.
* **till** (channel offline): receipts as ``Order Completed`` tracks without anonymousId/userId, carrying
  ``context.traits`` with e-mail *or* phone and loyalty_id, plus store_id.
* **crm** (channel offline): one ``identify`` per CRM contact with ``traits`` crm_id, email, phone,
  firstName, lastName, createdAt (no anonymousId/userId).
* **junk**: with probability ``junk_rate`` an event gets one placeholder identifier: anonymousId
  ``"undefined"``/``"null"``/``"0"``/..., userId ``"[object Object]"``/``"undefined"``/..., the all-zero
  advertising id, or an e-mail/phone such as ``test@test.com`` / ``(000) 000-0000`` on offline events.

Ground truth
------------
:func:`truth_identifiers` returns ``(identifier_key, person)`` for the identifiers in an event, with keys
``"user_id:<userId>"``, ``"anonymous_id:<anonymousId or alias previousId>"``, ``"device_id:<context.device.id
or advertisingId>"``, ``"email:<trimmed lower-case>"``, ``"phone:<E.164>"``, ``"loyalty_id:<id>"``,
``"crm_id:<id>"``.  Junk values and shared-device identifiers are omitted.  Phones are generated in German
(``+49 30 ...``, ``0049 30 ...``: ``00`` is the international prefix) and US formats (``(415) 555-2671``,
``415.555.2671``: national US numbers assume default region US).  All real identifiers are unique per person
(user ids, e-mails, phones, loyalty and CRM ids are bijective functions of the person index) for up to
80 million people; anonymous and device ids are random 128-bit / 64-bit values.

Offline CSV (:func:`generate_offline_csv`)
------------------------------------------
The rows come from the same offline events as the JSON stream (same people, same values):

* ``kind="receipts"`` (till receipts), columns: ``receipt_id, timestamp, email, phone, loyalty_id,
  store_id, total, currency, items``; ``timestamp`` is ISO-8601 UTC, ``email``/``phone`` are as typed at the
  till (one of them may be empty), ``total`` is a decimal string, ``items`` a JSON list of
  ``{"sku", "name", "category", "price", "quantity"}``.
* ``kind="crm"`` (CRM contacts), columns: ``crm_id, email, phone, first_name, last_name, created_at``.

CLI
---
``python -m bench.generator --people N --seed S --format jsonl|csv [--kind receipts|crm] --out FILE
[--truth FILE]`` writes events (without ``_truth``) as JSON Lines, or offline rows as CSV; ``--out -`` is
stdout.  ``--truth FILE`` writes a sidecar with one ``key<TAB>person`` line per true identifier (deduplicated;
read it with :func:`bench.accuracy.read_truth`).  A summary goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import math
import os
import random
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

try:  # orjson is a project dependency; fall back to json so the module stays importable anywhere
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


__all__ = [
    "CHANNELS",
    "EVENT_TYPES",
    "JUNK_VALUES",
    "MAX_PEOPLE",
    "GeneratorConfig",
    "generate_events",
    "generate_offline_csv",
    "identifier_keys",
    "is_junk_key",
    "main",
    "normalise_email",
    "normalise_phone",
    "strip_truth",
    "truth_identifiers",
    "truth_map",
    "write_truth",
]

DAY_MS = 86_400_000
MAX_PEOPLE = 80_000_000
EVENT_TYPES = ("track", "identify", "page", "screen", "alias")
CHANNELS = ("online", "mobile", "offline")
ZERO_UUID = "00000000-0000-0000-0000-000000000000"

# Placeholder values seen in the wild ("blob" profiles); raw values per identifier type.
JUNK_VALUES: dict[str, tuple[str, ...]] = {
    "anonymous_id": ("undefined", "null", "0", "anonymous", "NaN", ZERO_UUID),
    "user_id": ("[object Object]", "undefined", "null", "0", "-1", "none", "NaN", "guest"),
    "device_id": (ZERO_UUID, "unknown", "0"),
    "email": ("test@test.com", "none@none.com", "noemail@example.com", "n/a", "null"),
    "phone": ("(000) 000-0000", "+1 000 000 0000", "1234567890"),
    "loyalty_id": ("0", "none", "-"),
}


# --------------------------------------------------------------------------------------------- config


@dataclass
class GeneratorConfig:
    """Size, seed, time window and behaviour knobs of a synthetic population.

    Shares are probabilities per person unless noted; ranges are inclusive ``(low, high)``.
    """

    people: int
    seed: int = 42
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    days: int = 30
    never_identify_share: float = 0.4  # people who never log in / give an e-mail online
    cookies_per_person: tuple[int, int] = (1, 4)  # browsers / cookie resets
    mobile_share: float = 0.3  # people with the mobile app (the others have 0 devices)
    devices_per_app_user: tuple[int, int] = (1, 2)
    offline_share: float = 0.25  # people with till receipts
    receipts_per_person: tuple[int, int] = (1, 3)
    crm_share: float = 0.2  # people with a CRM contact record
    shared_device_share: float = 0.05  # share of households (person pairs 2k, 2k+1) sharing one device
    junk_rate: float = 0.02  # per event: probability of one placeholder identifier
    alias_share: float = 0.3  # per linked cookie: linked by alias instead of identify
    unlinked_cookie_share: float = 0.15  # per extra cookie of an identifying person: never linked
    phone_share: float = 0.5  # identify traits carrying a phone
    loyalty_share: float = 0.4  # online-only identifying people who also have a loyalty id
    sessions_per_cookie: tuple[int, int] = (1, 3)
    sessions_per_device: tuple[int, int] = (1, 3)
    events_per_session: tuple[int, int] = (2, 8)
    purchase_share: float = 0.25  # per session of a logged-in person: ends with an order

    def __post_init__(self) -> None:
        if not 0 <= self.people <= MAX_PEOPLE:
            raise ValueError(f"people must be in [0, {MAX_PEOPLE}], got {self.people}")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        for name in (
            "never_identify_share",
            "mobile_share",
            "offline_share",
            "crm_share",
            "shared_device_share",
            "junk_rate",
            "alias_share",
            "unlinked_cookie_share",
            "phone_share",
            "loyalty_share",
            "purchase_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name in (
            "cookies_per_person",
            "devices_per_app_user",
            "receipts_per_person",
            "sessions_per_cookie",
            "sessions_per_device",
            "events_per_session",
        ):
            low, high = getattr(self, name)
            minimum = 0 if name == "cookies_per_person" else 1
            if not minimum <= low <= high:
                raise ValueError(f"{name} must be ({minimum}<=low<=high), got {(low, high)}")
            setattr(self, name, (int(low), int(high)))

    @property
    def end_ms(self) -> int:
        """Exclusive end of the time window."""
        return self.start_ms + self.days * DAY_MS


# ------------------------------------------------------------------------------------ normalisation


def normalise_email(raw: Any) -> str | None:
    """Trim and lower-case (the contract's rule); ``None`` for empty values."""
    if not isinstance(raw, str):
        return None
    value = raw.strip().lower()
    return value or None


def normalise_phone(raw: Any) -> str | None:
    """E.164 for the formats this generator writes: ``+``/``00`` international, else US national."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        return None
    if text.startswith("+"):
        e164 = digits
    elif text.startswith("00"):
        e164 = digits[2:]
    elif len(digits) == 10:
        e164 = "1" + digits
    elif len(digits) == 11 and digits.startswith("1"):
        e164 = digits
    else:
        return None
    return "+" + e164 if 8 <= len(e164) <= 15 and not e164.startswith("0") else None


def _plain(raw: Any) -> str | None:
    if raw is None or isinstance(raw, (dict, list, bool)):
        return None
    value = str(raw)
    return value if value.strip() else None


_NORMALISERS = {
    "user_id": _plain,
    "anonymous_id": _plain,
    "device_id": _plain,
    "email": normalise_email,
    "phone": normalise_phone,
    "loyalty_id": _plain,
    "crm_id": _plain,
}

JUNK_KEYS: frozenset[str] = frozenset(
    f"{id_type}:{norm}"
    for id_type, values in JUNK_VALUES.items()
    for value in values
    if (norm := _NORMALISERS[id_type](value)) is not None
)


def is_junk_key(key: str) -> bool:
    """True for an identifier key built from a placeholder value (``user_id:[object Object]``...)."""
    return key in JUNK_KEYS


def identifier_keys(event: Mapping[str, Any]) -> list[str]:
    """All identifier keys of a Segment-style event, normalised, junk included, duplicates removed."""
    keys: list[str] = []

    def add(id_type: str, raw: Any) -> None:
        value = _NORMALISERS[id_type](raw)
        if value is not None:
            key = f"{id_type}:{value}"
            if key not in keys:
                keys.append(key)

    add("user_id", event.get("userId"))
    add("anonymous_id", event.get("anonymousId"))
    add("anonymous_id", event.get("previousId"))  # this generator aliases anonymous ids only
    context = event.get("context") or {}
    device = context.get("device") or {}
    add("device_id", device.get("id"))
    add("device_id", device.get("advertisingId"))
    for traits in (event.get("traits"), context.get("traits")):
        if traits:
            for id_type in ("email", "phone", "loyalty_id", "crm_id"):
                add(id_type, traits.get(id_type))
    return keys


def truth_identifiers(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(identifier_key, person)`` for the true identifiers of a generated event.

    Junk placeholders and identifiers of shared family devices are not attributed to anyone.  Events without
    ``_truth`` yield nothing.
    """
    truth = event.get("_truth")
    if not truth:
        return []
    person = truth["person"]
    shared = truth.get("shared") or ()
    return [(key, person) for key in identifier_keys(event) if key not in shared and key not in JUNK_KEYS]


def strip_truth(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A copy of the event without ``_truth``, and the truth record."""
    clean = dict(event)
    truth = clean.pop("_truth", None)
    return clean, truth


def truth_map(events: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """identifier key -> person over a (finite) event stream; O(number of identifiers) memory."""
    mapping: dict[str, str] = {}
    for event in events:
        for key, person in truth_identifiers(event):
            mapping[key] = person
    return mapping


# ------------------------------------------------------------------------------------- static data

_FIRST = (
    ("Anna", "anna"),
    ("Lukas", "lukas"),
    ("Jürgen", "juergen"),
    ("Mia", "mia"),
    ("Jonas", "jonas"),
    ("Wei", "wei"),
    ("Li", "li"),
    ("Fang", "fang"),
    ("Jan", "jan"),
    ("Sanne", "sanne"),
    ("Daan", "daan"),
    ("Emma", "emma"),
    ("Noah", "noah"),
    ("Sophie", "sophie"),
    ("John", "john"),
    ("Olivia", "olivia"),
    ("Mateo", "mateo"),
    ("Zoë", "zoe"),
    ("Lena", "lena"),
    ("Finn", "finn"),
)
_LAST = (
    ("Müller", "mueller"),
    ("Schmidt", "schmidt"),
    ("Schneider", "schneider"),
    ("Fischer", "fischer"),
    ("Wang", "wang"),
    ("Zhang", "zhang"),
    ("Liu", "liu"),
    ("de Vries", "devries"),
    ("Jansen", "jansen"),
    ("van Dijk", "vandijk"),
    ("Doe", "doe"),
    ("Smith", "smith"),
    ("Garcia", "garcia"),
    ("Bakker", "bakker"),
    ("Weber", "weber"),
)
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "shop.example")
_LOCALES = (
    ("de-DE", "EUR", "Berlin", "DE"),
    ("nl-NL", "EUR", "Amsterdam", "NL"),
    ("en-US", "USD", "San Francisco", "US"),
    ("zh-CN", "CNY", "Shanghai", "CN"),
    ("en-GB", "GBP", "London", "GB"),
)
_US_AREAS = (
    "201", "206", "212", "213", "305", "312", "404", "415", "503", "512",
    "602", "617", "646", "702", "713", "718", "805", "917", "919", "971",
)  # fmt: skip
_US_EXCHANGES = tuple(str(x) for x in range(200, 1000) if x % 100 != 11)  # no N11 service codes
_PRODUCTS = (
    ("SKU-1001", "Trail Running Shoe", "shoes", 129.0),
    ("SKU-1002", "City Sneaker", "shoes", 89.0),
    ("SKU-2001", "Rain Jacket", "outerwear", 159.0),
    ("SKU-2002", "Down Vest", "outerwear", 119.0),
    ("SKU-3001", "Merino T-Shirt", "tops", 49.0),
    ("SKU-3002", "Linen Shirt", "tops", 59.0),
    ("SKU-4001", "Canvas Backpack", "bags", 79.0),
    ("SKU-4002", "Leather Wallet", "accessories", 39.0),
    ("SKU-5001", "Wool Socks 3-Pack", "accessories", 19.0),
    ("SKU-6001", "Yoga Mat", "sports", 35.0),
    ("SKU-6002", "Water Bottle", "sports", 15.0),
    ("SKU-7001", "Gift Card", "gift", 50.0),
)
_SITE = "https://shop.example.com"
_STATIC_PAGES = (
    ("/", "Home"),
    ("/pricing", "Pricing"),
    ("/cart", "Cart"),
    ("/account", "Your account"),
    ("/blog/spring-collection", "Spring collection"),
    ("/stores", "Find a store"),
)
_REFERRERS = (
    "",
    "https://www.google.com/",
    "https://news.example.org/article/42",
    "https://social.example.net/post/7",
    "https://mail.example.com/newsletter",
)
_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
)
_TEST_NETS = ("192.0.2", "198.51.100", "203.0.113")  # RFC 5737 documentation ranges only
_DEVICES = (
    ("ios", "Apple", "iPhone15,2", "iOS", "17.5"),
    ("ios", "Apple", "iPhone16,1", "iOS", "18.1"),
    ("ios", "Apple", "iPad13,1", "iPadOS", "17.4"),
    ("android", "samsung", "SM-S918B", "Android", "14"),
    ("android", "Google", "Pixel 8", "Android", "14"),
    ("android", "Xiaomi", "23049PCD8G", "Android", "13"),
)
_SCREENS = ("Home", "Product List", "Product Detail", "Cart", "Account", "Store Locator")
_APP = {"name": "Shop", "version": "3.4.1", "build": "341", "namespace": "com.example.shop"}
_STORES = ("berlin-01", "berlin-02", "amsterdam-01", "london-01", "shanghai-01", "sf-01")


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _affine(seed: int, salt: str, modulus: int) -> tuple[int, int, int]:
    """A seeded bijection ``i -> (a*i + b) % modulus`` on ``range(modulus)``."""
    digest = hashlib.sha256(f"{seed}:{salt}".encode()).digest()
    a = int.from_bytes(digest[:8], "big") % modulus or 1
    while math.gcd(a, modulus) != 1:
        a = a % (modulus - 1) + 1
    b = int.from_bytes(digest[8:16], "big") % modulus
    return a, b, modulus


def _apply(params: tuple[int, int, int], i: int) -> int:
    a, b, m = params
    return (a * i + b) % m


class _Ctx:
    """Per-run constants shared by all people."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        self.cfg = cfg
        self.user = _affine(cfg.seed, "user", 1 << 40)
        self.email = _affine(cfg.seed, "email", 100_000_000)
        self.loyalty = _affine(cfg.seed, "loyalty", 10_000_000_000)
        self.crm = _affine(cfg.seed, "crm", 100_000_000)
        self.de_phone = _affine(cfg.seed, "de-phone", 80_000_000)
        self.us_phone = _affine(cfg.seed, "us-phone", len(_US_AREAS) * len(_US_EXCHANGES) * 10_000)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _email_variant(rng: random.Random, email: str) -> str:
    local, _, domain = email.partition("@")
    choice = rng.randrange(6)
    if choice == 0:
        return email
    if choice == 1:
        return email.upper()
    if choice == 2:
        return "  " + ".".join(p.capitalize() for p in local.split(".")) + "@" + domain.capitalize() + " "
    if choice == 3:
        return f"{local.title()}@{domain.upper()}"
    if choice == 4:
        return f"\t{email} "
    return f"{local}@{domain.upper()}"


def _phone_variant(rng: random.Random, e164: str) -> str:
    if e164.startswith("+49"):
        area, sub = e164[3:5], e164[5:]
        return rng.choice(
            (
                f"+49 {area} {sub}",
                f"0049 {area} {sub}",
                f"+49-{area}-{sub[:4]}-{sub[4:]}",
                f"+49 ({area}) {sub}",
                f"+49{area} {sub}",
                e164,
            )
        )
    area, exch, line = e164[2:5], e164[5:8], e164[8:]
    return rng.choice(
        (
            f"({area}) {exch}-{line}",
            f"+1 {area}-{exch}-{line}",
            f"{area}.{exch}.{line}",
            f"1 ({area}) {exch}-{line}",
            f"+1 {area} {exch} {line}",
            e164,
        )
    )


# ------------------------------------------------------------------------------------------ people


class _Device:
    __slots__ = ("ad_id", "anon", "id", "ip", "kind", "maker", "model", "os", "os_version", "shared")

    def __init__(self, rng: random.Random, shared_keys: tuple[str, ...] = ()) -> None:
        self.kind, self.maker, self.model, self.os, self.os_version = rng.choice(_DEVICES)
        if self.kind == "ios":
            self.id = _uuid(rng).upper()
            self.ad_id: str | None = _uuid(rng).upper() if rng.random() < 0.6 else None  # ATT opt-in
        else:
            self.id = f"{rng.getrandbits(64):016x}"
            self.ad_id = _uuid(rng) if rng.random() < 0.9 else None
        self.anon = _uuid(rng)  # app install id, the SDK's anonymousId
        self.ip = f"{rng.choice(_TEST_NETS)}.{rng.randint(1, 254)}"
        self.shared = shared_keys

    def shared_keys(self) -> tuple[str, ...]:
        keys = [f"device_id:{self.id}", f"anonymous_id:{self.anon}"]
        if self.ad_id:
            keys.append(f"device_id:{self.ad_id}")
        return tuple(keys)


class _Journey:
    """Builds the events of one person (bounded: a few dozen events)."""

    def __init__(self, ctx: _Ctx, idx: int) -> None:
        cfg = ctx.cfg
        self.cfg = cfg
        self.idx = idx
        self.person = f"p{idx:06d}"
        self.rng = rng = random.Random(f"{cfg.seed}:person:{idx}")
        self.events: list[tuple[int, int, dict[str, Any]]] = []
        self._last_page: tuple[str, str, str] = ("/", "Home", "")

        first, first_ascii = rng.choice(_FIRST)
        last, last_ascii = rng.choice(_LAST)
        self.first_name, self.last_name = first, last
        self.locale, self.currency, self.city, self.country = rng.choice(_LOCALES)
        self.email = f"{first_ascii}.{last_ascii}{_apply(ctx.email, idx)}@{rng.choice(_DOMAINS)}"
        if self.country == "US" or (self.country not in ("DE", "NL") and rng.random() < 0.5):
            n = _apply(ctx.us_phone, idx)
            area = _US_AREAS[n % len(_US_AREAS)]
            n //= len(_US_AREAS)
            exch = _US_EXCHANGES[n % len(_US_EXCHANGES)]
            self.phone = f"+1{area}{exch}{n // len(_US_EXCHANGES):04d}"
        else:
            self.phone = f"+4930{20_000_000 + _apply(ctx.de_phone, idx)}"
        self.birthday = f"{rng.randint(1950, 2006)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"

        self.identifies = rng.random() >= cfg.never_identify_share
        self.user_id = f"u_{_apply(ctx.user, idx):010x}" if self.identifies else None
        self.has_app = rng.random() < cfg.mobile_share
        self.offline = rng.random() < cfg.offline_share
        self.in_crm = rng.random() < cfg.crm_share
        has_loyalty = self.offline or (self.identifies and rng.random() < cfg.loyalty_share)
        self.loyalty_id = f"LY{_apply(ctx.loyalty, idx):010d}" if has_loyalty else None
        self.crm_id = f"C-{_apply(ctx.crm, idx):08d}" if self.in_crm else None

        span = cfg.end_ms - cfg.start_ms
        self.t0 = cfg.start_ms + int(rng.random() * span * 0.7)
        self.t_last = cfg.end_ms - 2 * 3_600_000  # sessions start before this, so they end in the window

        # Household (people 2k, 2k+1): derived from its own RNG, so both members agree on the device.
        self.shared_device: _Device | None = None
        partner = idx ^ 1
        if partner < cfg.people and cfg.shared_device_share > 0:
            hh = random.Random(f"{cfg.seed}:household:{idx >> 1}")
            if hh.random() < cfg.shared_device_share:
                device = _Device(hh)
                device.shared = device.shared_keys()
                self.shared_device = device

    # ----------------------------------------------------------------------------- helpers

    def _time(self) -> int:
        return self.rng.randint(self.t0, max(self.t0, self.t_last))

    def _step(self, t: int) -> int:
        return t + self.rng.randint(3_000, 120_000) + self.rng.randint(0, 999)

    def _traits(self, full: bool) -> dict[str, Any]:
        rng = self.rng
        traits: dict[str, Any] = {"email": _email_variant(rng, self.email)}
        if full:
            traits["firstName"] = self.first_name
            traits["lastName"] = self.last_name
            traits["birthday"] = self.birthday
            traits["address"] = {"city": self.city, "country": self.country}
            if self.loyalty_id:
                traits["loyalty_id"] = self.loyalty_id
        if rng.random() < self.cfg.phone_share:
            traits["phone"] = _phone_variant(rng, self.phone)
        return traits

    def _emit(
        self,
        t: int,
        channel: str,
        source: str,
        event: dict[str, Any],
        shared: tuple[str, ...] = (),
    ) -> None:
        rng = self.rng
        t = min(t, self.cfg.end_ms - 1)
        event["messageId"] = _uuid(rng)
        event["timestamp"] = _iso(t)
        if rng.random() < self.cfg.junk_rate:
            self._inject_junk(event, channel)
        event["_truth"] = {
            "person": self.person,
            "channel": channel,
            "source": source,
            "shared": list(shared),
        }
        self.events.append((t, len(self.events), event))

    def _inject_junk(self, event: dict[str, Any], channel: str) -> None:
        rng = self.rng
        if channel == "offline":
            traits = event.get("traits") or event["context"]["traits"]
            for field in ("email", "phone", "loyalty_id"):
                if traits.get(field):
                    traits[field] = rng.choice(JUNK_VALUES[field])
                    return
            return
        options = ["anonymousId", "userId"]
        if channel == "mobile":
            options.append("advertisingId")
        target = rng.choice(options)
        if target == "anonymousId":
            event["anonymousId"] = rng.choice(JUNK_VALUES["anonymous_id"])
        elif target == "userId":
            event["userId"] = rng.choice(JUNK_VALUES["user_id"])
        else:
            event["context"]["device"]["advertisingId"] = ZERO_UUID

    # ----------------------------------------------------------------------------------- web

    def _web_context(self, cookie: dict[str, str], page: tuple[str, str, str]) -> dict[str, Any]:
        path, title, referrer = page
        return {
            "library": {"name": "analytics.js", "version": "2.11.1"},
            "page": {"path": path, "url": _SITE + path, "title": title, "referrer": referrer},
            "userAgent": cookie["ua"],
            "ip": cookie["ip"],
            "locale": self.locale,
        }

    def _ids(self, anon: str, user: str | None) -> dict[str, Any]:
        ids = {"anonymousId": anon}
        if user:
            ids["userId"] = user
        return ids

    def _page(self, t: int, cookie: dict[str, str], user: str | None, path: str, title: str, ref: str) -> None:
        props = {"path": path, "url": _SITE + path, "title": title, "referrer": ref}
        event = {"type": "page", **self._ids(cookie["anon"], user), "name": title, "properties": props}
        event["context"] = self._web_context(cookie, (path, title, ref))
        self._emit(t, "online", "web", event)

    def _web_track(
        self, t: int, cookie: dict[str, str], user: str | None, name: str, props: dict[str, Any], page: tuple
    ) -> None:
        event = {"type": "track", **self._ids(cookie["anon"], user), "event": name, "properties": props}
        event["context"] = self._web_context(cookie, page)
        self._emit(t, "online", "web", event)

    def _product_props(self, product: tuple, quantity: int = 1) -> dict[str, Any]:
        sku, name, category, price = product
        return {
            "product_id": sku,
            "sku": sku,
            "name": name,
            "category": category,
            "price": price,
            "quantity": quantity,
            "currency": self.currency,
        }

    def _order_props(self) -> dict[str, Any]:
        rng = self.rng
        products = [self._product_props(p, rng.randint(1, 2)) for p in rng.sample(_PRODUCTS, rng.randint(1, 3))]
        total = round(sum(p["price"] * p["quantity"] for p in products), 2)
        return {
            "order_id": f"ord-{rng.getrandbits(64):016x}",
            "total": total,
            "revenue": total,
            "currency": self.currency,
            "products": products,
        }

    def _web_link(self, t: int, cookie: dict[str, str], mode: str, page: tuple, first: bool) -> int:
        assert self.user_id is not None
        anon = cookie["anon"]
        if mode == "alias":
            alias: dict[str, Any] = {"type": "alias", "previousId": anon, "userId": self.user_id}
            alias["anonymousId"] = anon
            alias["context"] = self._web_context(cookie, page)
            self._emit(t, "online", "web", alias)
            t = self._step(t)
        traits = self._traits(full=first) if first or self.rng.random() < 0.5 else {}
        event: dict[str, Any] = {"type": "identify", "userId": self.user_id, "anonymousId": anon, "traits": traits}
        event["context"] = self._web_context(cookie, page)
        self._emit(t, "online", "web", event)
        return self._step(t)

    def _web(self) -> None:
        rng, cfg = self.rng, self.cfg
        n_cookies = rng.randint(*cfg.cookies_per_person)
        for ci in range(n_cookies):
            cookie = {
                "anon": _uuid(rng),
                "ua": rng.choice(_USER_AGENTS),
                "ip": f"{rng.choice(_TEST_NETS)}.{rng.randint(1, 254)}",
            }
            starts = sorted(self._time() for _ in range(rng.randint(*cfg.sessions_per_cookie)))
            mode = "none"
            if self.user_id:
                if ci > 0 and rng.random() < cfg.unlinked_cookie_share:
                    mode = "none"
                else:
                    mode = "alias" if rng.random() < cfg.alias_share else "identify"
            link_session = rng.randrange(len(starts)) if mode != "none" else -1
            user: str | None = None
            for si, t in enumerate(starts):
                n = rng.randint(*cfg.events_per_session)
                link_at = rng.randint(0, n) if si == link_session else -1
                page: tuple[str, str, str] = ("/", "Home", rng.choice(_REFERRERS))
                for k in range(n + 1):
                    if k == link_at:
                        t = self._web_link(t, cookie, mode, page, first=ci == 0)
                        user = self.user_id
                    if k == n:
                        break
                    t = self._web_action(t, cookie, user, k, page)
                    page = self._last_page
                    t = self._step(t)
                if user and rng.random() < cfg.purchase_share:
                    self._web_checkout(t, cookie, user)

    def _web_action(self, t: int, cookie: dict[str, str], user: str | None, k: int, page: tuple) -> int:
        rng = self.rng
        referrer = page[2] if k == 0 else _SITE + page[0]
        roll = rng.random()
        if k == 0 or roll < 0.45:
            if rng.random() < 0.5:
                path, title = rng.choice(_STATIC_PAGES)
                self._page(t, cookie, user, path, title, referrer)
                self._last_page = (path, title, referrer)
                return t
            product = rng.choice(_PRODUCTS)
            path = "/products/" + product[1].lower().replace(" ", "-")
            self._page(t, cookie, user, path, product[1], referrer)
            page = self._last_page = (path, product[1], referrer)
            t = self._step(t)
            self._web_track(t, cookie, user, "Product Viewed", self._product_props(product), page)
            return t
        if roll < 0.75:
            product = rng.choice(_PRODUCTS)
            path = "/products/" + product[1].lower().replace(" ", "-")
            self._last_page = page = (path, product[1], referrer)
            self._web_track(t, cookie, user, "Product Viewed", self._product_props(product), page)
            return t
        if roll < 0.9:
            self._last_page = page
            self._web_track(t, cookie, user, "Product Added", self._product_props(rng.choice(_PRODUCTS)), page)
            return t
        self._page(t, cookie, user, "/pricing", "Pricing", referrer)
        self._last_page = ("/pricing", "Pricing", referrer)
        return t

    def _web_checkout(self, t: int, cookie: dict[str, str], user: str) -> None:
        order = self._order_props()
        cart = ("/cart", "Cart", _SITE + "/")
        self._page(t, cookie, user, "/cart", "Cart", _SITE + "/")
        t = self._step(t)
        self._web_track(t, cookie, user, "Checkout Started", dict(order), cart)
        t = self._step(t)
        self._web_track(t, cookie, user, "Order Completed", order, ("/checkout", "Checkout", _SITE + "/cart"))

    # ---------------------------------------------------------------------------------- app

    def _app_context(self, device: _Device) -> dict[str, Any]:
        device_ctx: dict[str, Any] = {
            "id": device.id,
            "type": device.kind,
            "manufacturer": device.maker,
            "model": device.model,
        }
        if device.ad_id:
            device_ctx["advertisingId"] = device.ad_id
            device_ctx["adTrackingEnabled"] = True
        library = "analytics-ios" if device.kind == "ios" else "analytics-android"
        return {
            "library": {"name": library, "version": "4.1.8"},
            "app": dict(_APP),
            "device": device_ctx,
            "os": {"name": device.os, "version": device.os_version},
            "ip": device.ip,
            "locale": self.locale,
            "network": {"wifi": self.rng.random() < 0.6},
        }

    def _app_event(self, t: int, device: _Device, user: str | None, body: dict[str, Any]) -> None:
        event = {**body, **self._ids(device.anon, user)}
        event["context"] = self._app_context(device)
        self._emit(t, "mobile", "app", event, device.shared)

    def _app_device(self, device: _Device) -> None:
        rng, cfg = self.rng, self.cfg
        starts = sorted(self._time() for _ in range(rng.randint(*cfg.sessions_per_device)))
        link_session = rng.randrange(len(starts)) if self.user_id else -1
        user: str | None = None
        for si, t in enumerate(starts):
            self._app_event(t, device, user, {"type": "track", "event": "Application Opened", "properties": {}})
            t = self._step(t)
            if si == link_session:
                assert self.user_id is not None
                user = self.user_id
                body = {"type": "identify", "traits": self._traits(full=rng.random() < 0.5)}
                self._app_event(t, device, user, body)
                t = self._step(t)
            for _ in range(rng.randint(*cfg.events_per_session)):
                roll = rng.random()
                if roll < 0.55:
                    name = rng.choice(_SCREENS)
                    props: dict[str, Any] = {"name": name}
                    if name == "Product Detail":
                        props.update(self._product_props(rng.choice(_PRODUCTS)))
                    self._app_event(t, device, user, {"type": "screen", "name": name, "properties": props})
                elif roll < 0.85:
                    props = self._product_props(rng.choice(_PRODUCTS))
                    self._app_event(t, device, user, {"type": "track", "event": "Product Viewed", "properties": props})
                else:
                    props = self._product_props(rng.choice(_PRODUCTS))
                    self._app_event(t, device, user, {"type": "track", "event": "Product Added", "properties": props})
                t = self._step(t)
            if user and rng.random() < cfg.purchase_share:
                order = self._order_props()
                self._app_event(t, device, user, {"type": "track", "event": "Order Completed", "properties": order})

    # ------------------------------------------------------------------------------ offline

    def _till(self) -> None:
        rng = self.rng
        for _ in range(rng.randint(*self.cfg.receipts_per_person)):
            t = self._time()
            store = rng.choice(_STORES)
            order = self._order_props()
            order["order_id"] = f"R-{store}-{rng.getrandbits(48):012x}"
            order["store_id"] = store
            traits: dict[str, Any] = {}
            if rng.random() < 0.5:
                traits["email"] = _email_variant(rng, self.email)
            else:
                traits["phone"] = _phone_variant(rng, self.phone)
            traits["loyalty_id"] = self.loyalty_id
            event = {
                "type": "track",
                "event": "Order Completed",
                "properties": order,
                "context": {"library": {"name": "till", "version": "1.0"}, "traits": traits},
            }
            self._emit(t, "offline", "till", event)

    def _crm(self) -> None:
        rng = self.rng
        t = rng.randint(self.cfg.start_ms, self.t_last)
        traits: dict[str, Any] = {
            "crm_id": self.crm_id,
            "email": _email_variant(rng, self.email),
            "phone": _phone_variant(rng, self.phone),
            "firstName": self.first_name,
            "lastName": self.last_name,
            "createdAt": _iso(t),
        }
        event = {
            "type": "identify",
            "traits": traits,
            "context": {"library": {"name": "crm-export", "version": "1.0"}},
        }
        self._emit(t, "offline", "crm", event)

    # -------------------------------------------------------------------------------- build

    def build(self) -> list[dict[str, Any]]:
        self._web()
        if self.has_app:
            for _ in range(self.rng.randint(*self.cfg.devices_per_app_user)):
                self._app_device(_Device(self.rng))
        if self.shared_device is not None:
            self._app_device(self.shared_device)
        if self.offline:
            self._till()
        if self.in_crm:
            self._crm()
        self.events.sort(key=lambda item: (item[0], item[1]))
        return [event for _, _, event in self.events]


def generate_events(cfg: GeneratorConfig, persons: range | None = None) -> Iterator[dict[str, Any]]:
    """Stream the events of ``cfg.people`` people (or of the slice ``persons``), person by person.

    Each person's events depend only on ``(cfg, person index)``, so slices generated separately concatenate
    to exactly the full stream.  Within a person events are in time order.
    """
    ctx = _Ctx(cfg)
    people = range(cfg.people) if persons is None else range(cfg.people)[persons.start : persons.stop]
    for idx in people:
        yield from _Journey(ctx, idx).build()


# ------------------------------------------------------------------------------------ CSV + truth

RECEIPT_COLUMNS = (
    "receipt_id",
    "timestamp",
    "email",
    "phone",
    "loyalty_id",
    "store_id",
    "total",
    "currency",
    "items",
)
CRM_COLUMNS = ("crm_id", "email", "phone", "first_name", "last_name", "created_at")


def _csv_row(event: Mapping[str, Any], kind: str) -> list[Any] | None:
    source = event["_truth"]["source"]
    if kind == "receipts" and source == "till":
        props = event["properties"]
        traits = event["context"]["traits"]
        items = [
            {
                "sku": p["sku"],
                "name": p["name"],
                "category": p["category"],
                "price": p["price"],
                "quantity": p["quantity"],
            }
            for p in props["products"]
        ]
        return [
            props["order_id"],
            event["timestamp"],
            traits.get("email", ""),
            traits.get("phone", ""),
            traits.get("loyalty_id") or "",
            props["store_id"],
            f"{props['total']:.2f}",
            props["currency"],
            json.dumps(items, ensure_ascii=False, separators=(",", ":")),
        ]
    if kind == "crm" and source == "crm":
        traits = event["traits"]
        return [
            traits.get("crm_id", ""),
            traits.get("email", ""),
            traits.get("phone", ""),
            traits["firstName"],
            traits["lastName"],
            traits["createdAt"],
        ]
    return None


def _offline_rows(cfg: GeneratorConfig, kind: str) -> Iterator[tuple[list[Any], dict[str, Any]]]:
    for event in generate_events(cfg):
        row = _csv_row(event, kind)
        if row is not None:
            yield row, event


class _TruthWriter:
    """Writes ``key<TAB>person`` lines, deduplicated per person.

    Deduplication keeps only the current person's keys, which is exact for generator output (events arrive
    grouped by person) and keeps memory O(1); other orders may repeat lines, which readers tolerate.
    """

    def __init__(self, fh: TextIO) -> None:
        self.fh = fh
        self.person: str | None = None
        self.seen: set[str] = set()
        self.count = 0

    def add(self, event: Mapping[str, Any]) -> None:
        for key, person in truth_identifiers(event):
            if person != self.person:
                self.person, self.seen = person, set()
            if key not in self.seen:
                self.seen.add(key)
                self.fh.write(f"{key}\t{person}\n")
                self.count += 1


def write_truth(events: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Stream the truth sidecar for ``events``; returns the number of identifier lines written."""
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        writer = _TruthWriter(fh)
        for event in events:
            writer.add(event)
        return writer.count


def generate_offline_csv(
    cfg: GeneratorConfig, path: str | Path, kind: str = "receipts", truth_path: str | Path | None = None
) -> int:
    """Stream till receipts (``kind="receipts"``) or CRM contacts (``kind="crm"``) as CSV; returns rows.

    ``path`` ``"-"`` writes to stdout; ``truth_path`` also writes the truth sidecar of the rows' identifiers.
    """
    if kind not in ("receipts", "crm"):
        raise ValueError(f"kind must be 'receipts' or 'crm', got {kind!r}")
    columns = RECEIPT_COLUMNS if kind == "receipts" else CRM_COLUMNS
    with contextlib.ExitStack() as stack:
        if str(path) == "-":
            fh: TextIO = sys.stdout
        else:
            fh = stack.enter_context(open(path, "w", encoding="utf-8", newline=""))
        truth = _truth_writer(stack, truth_path)
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        rows = 0
        for row, event in _offline_rows(cfg, kind):
            writer.writerow(row)
            rows += 1
            if truth:
                truth.add(event)
        fh.flush()
        return rows


def _truth_writer(stack: contextlib.ExitStack, truth_path: str | Path | None) -> _TruthWriter | None:
    if not truth_path:
        return None
    return _TruthWriter(stack.enter_context(open(truth_path, "w", encoding="utf-8", newline="\n")))


# -------------------------------------------------------------------------------------------- CLI


def _write_jsonl(cfg: GeneratorConfig, out: str, truth_path: str | None) -> int:
    with contextlib.ExitStack() as stack:
        out_fh = sys.stdout.buffer if out == "-" else stack.enter_context(open(out, "wb"))
        truth = _truth_writer(stack, truth_path)
        count = 0
        for event in generate_events(cfg):
            if truth:
                truth.add(event)
            clean, _ = strip_truth(event)
            out_fh.write(_dumps(clean) + b"\n")
            count += 1
        out_fh.flush()
        return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.generator", description="Synthetic customers with known identity ground truth."
    )
    parser.add_argument("--people", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--start-ms", type=int, default=GeneratorConfig.start_ms)
    parser.add_argument("--junk-rate", type=float, default=GeneratorConfig.junk_rate)
    parser.add_argument("--shared-device-share", type=float, default=GeneratorConfig.shared_device_share)
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    parser.add_argument("--kind", choices=("receipts", "crm"), default="receipts", help="CSV content")
    parser.add_argument("--out", required=True, help="output file, '-' for stdout")
    parser.add_argument("--truth", help="sidecar file: one 'key<TAB>person' line per true identifier")
    args = parser.parse_args(argv)
    cfg = GeneratorConfig(
        people=args.people,
        seed=args.seed,
        days=args.days,
        start_ms=args.start_ms,
        junk_rate=args.junk_rate,
        shared_device_share=args.shared_device_share,
    )
    started = time.perf_counter()
    try:
        if args.format == "jsonl":
            count = _write_jsonl(cfg, args.out, args.truth)
            what = "events"
        else:
            count = generate_offline_csv(cfg, args.out, args.kind, args.truth)
            what = f"{args.kind} rows"
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    elapsed = time.perf_counter() - started
    print(f"{count} {what} for {cfg.people} people (seed {cfg.seed}) in {elapsed:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
