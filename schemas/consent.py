"""Consent: the purposes we know, how Segment's category names map to them, and how choices fold into a state.

Segment SDKs send ``context.consent.categoryPreferences`` ({category: bool}) on every event; the category names
are whatever the site's consent manager calls them ("Advertising", "Marketing", "C0004", "ad_storage"...). The
collector maps them to our four purposes (:data:`PURPOSES`) and stamps the result on the event as
``context.consent.purposes``; the purposes it does not name (all of them, for an event without a consent object)
get its source's default, as ``context.consent.defaults`` (:func:`stamp_consent`). Both are in the raw event,
so a replay decides the same.

The fold (:func:`key_choice`, :func:`profile_consent`) is the specification the ClickHouse views implement
(sinks/views/consent_by_key_mv.sql, profile_consent_of.sql): per identifier key the latest explicit choice per
purpose wins (a default only where the key never chose); per profile, the latest choice wins if it was made at
or after the profile's latest merge, otherwise the most restrictive of its keys' choices does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from schemas.errors import FieldError

ADVERTISING: Final = "advertising"
PURPOSES: Final = ("necessary", "analytics", "personalization", ADVERTISING)
# What an event without a consent object means, unless its source says otherwise: advertising needs an explicit yes.
DEFAULT_CONSENT: Final[Mapping[str, bool]] = {p: p != ADVERTISING for p in PURPOSES}

# Category names of Segment's consent categories, OneTrust's category ids, Google Consent Mode and TCF-style
# wording, compared lower-case without spaces, dashes or underscores.
_ALIASES: Final[dict[str, str]] = {
    **dict.fromkeys(
        ("necessary", "strictlynecessary", "essential", "required", "c0001", "securitystorage"), "necessary"
    ),
    **dict.fromkeys(
        ("analytics", "performance", "statistics", "measurement", "analyticsstorage", "c0002"), "analytics"
    ),
    **dict.fromkeys(
        (
            "personalization",
            "personalisation",
            "functional",
            "functionality",
            "preferences",
            "functionalitystorage",
            "personalizationstorage",
            "c0003",
        ),
        "personalization",
    ),
    **dict.fromkeys(
        (
            "advertising",
            "advertisement",
            "ads",
            "marketing",
            "targeting",
            "adstorage",
            "aduserdata",
            "adpersonalization",
            "c0004",
        ),
        ADVERTISING,
    ),
}
_NOISE: Final = re.compile(r"[\s_\-]+")
PREFERENCES_LOC: Final = "context.consent.categoryPreferences"


def purpose_of(category: str) -> str:
    """Our purpose for a consent manager's category name; an unknown name is kept, lower-cased (shown on the
    profile, required by no audience).

    >>> purpose_of("Advertising"), purpose_of("Functional"), purpose_of("ad_storage"), purpose_of("Social Media")
    ('advertising', 'personalization', 'advertising', 'social media')
    """
    text = category.strip().lower()
    return _ALIASES.get(_NOISE.sub("", text), text)


def normalise_preferences(preferences: Mapping[str, bool]) -> dict[str, bool]:
    """Purposes from a ``categoryPreferences`` object. Several categories of one purpose: all must be granted.
    An empty object means everything denied (Segment's reading).

    >>> normalise_preferences({"Advertising": True, "Marketing": False, "Analytics": True})
    {'advertising': False, 'analytics': True}
    >>> normalise_preferences({}) == dict.fromkeys(PURPOSES, False)
    True
    """
    if not preferences:
        return dict.fromkeys(PURPOSES, False)
    out: dict[str, bool] = {}
    for category, granted in preferences.items():
        purpose = purpose_of(category)
        out[purpose] = out.get(purpose, True) and granted
    return out


def consent_errors(payload: Mapping[str, Any]) -> list[FieldError]:
    """Shape errors of an event's consent object, each naming its field (the collector answers 400 with them)."""
    context = payload.get("context")
    if not isinstance(context, Mapping) or "consent" not in context or context["consent"] is None:
        return []
    consent = context["consent"]
    if not isinstance(consent, Mapping):
        return [FieldError("context.consent", "must be an object")]
    preferences = consent.get("categoryPreferences")
    if preferences is None:
        return []
    if not isinstance(preferences, Mapping):
        return [FieldError(PREFERENCES_LOC, "must be an object of category: true or false")]
    return [
        FieldError(f"{PREFERENCES_LOC}.{name}", "must be true or false")
        for name, granted in preferences.items()
        if not isinstance(granted, bool)
    ]


def validate_default(default: Any, loc: str) -> dict[str, bool]:
    """A source's default consent, ``{purpose: bool}`` over known purposes, merged over :data:`DEFAULT_CONSENT`;
    raises ValueError naming the field."""
    if not isinstance(default, Mapping):
        raise ValueError(f"{loc}: must be an object of purpose: true or false")
    for name, granted in default.items():
        if name not in PURPOSES:
            raise ValueError(f"{loc}.{name}: not a purpose (one of {', '.join(PURPOSES)})")
        if not isinstance(granted, bool):
            raise ValueError(f"{loc}.{name}: must be true or false")
    return {**DEFAULT_CONSENT, **default}


def parse_consent_default(text: str) -> dict[str, bool]:
    """``advertising=true,analytics=false`` (the command line's form) as a source's default.

    >>> parse_consent_default("advertising=true")["advertising"]
    True
    """
    pairs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        pairs[name.strip()] = {"true": True, "false": False}.get(value.strip().lower(), value)
    return validate_default(pairs, "--consent-default")


def stamp_consent(context: dict[str, Any], default: Mapping[str, bool] | None = None) -> None:
    """Stamp an event's context (validated: :func:`consent_errors` found nothing) with the purposes its consent
    object names (``purposes``) and its source's default for the others (``defaults``). The stamped fields are
    ours: a client's are replaced.

    >>> context = {"consent": {"categoryPreferences": {"Advertising": True}}}
    >>> stamp_consent(context, {"necessary": True, "advertising": False})
    >>> context["consent"]["purposes"], context["consent"]["defaults"]
    ({'advertising': True}, {'necessary': True})
    """
    raw = context.get("consent")
    consent: dict[str, Any] = dict(raw) if isinstance(raw, Mapping) else {}
    consent.pop("purposes", None)
    consent.pop("defaults", None)
    preferences = consent.get("categoryPreferences")
    choices = {k: v for k, v in preferences.items() if isinstance(v, bool)} if isinstance(preferences, Mapping) else {}
    purposes = (
        normalise_preferences(choices) if isinstance(preferences, Mapping) and (choices or not preferences) else {}
    )
    if purposes:
        consent["purposes"] = purposes
    chosen = DEFAULT_CONSENT if default is None else default
    consent["defaults"] = {p: g for p, g in chosen.items() if p not in purposes}
    context["consent"] = consent


# ---- the fold --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choice:
    """One event's word on one purpose for one identifier key: explicit (its consent object) or its source's
    default. ``at`` is the event's time; ``message_id`` settles ties as the views do."""

    key: str
    purpose: str
    granted: bool
    at: datetime
    explicit: bool
    message_id: str = ""


def _rank(c: Choice) -> tuple[bool, datetime, str]:
    return (c.explicit, c.at, c.message_id)


def key_choice(choices: Iterable[Choice]) -> dict[tuple[str, str], Choice]:
    """Per (key, purpose) the choice that stands: the latest explicit one, a default only where there is none."""
    out: dict[tuple[str, str], Choice] = {}
    for c in choices:
        known = out.get((c.key, c.purpose))
        if known is None or _rank(c) > _rank(known):
            out[(c.key, c.purpose)] = c
    return out


def profile_consent(choices: Iterable[Choice], merged_at: datetime | None) -> dict[str, bool]:
    """A profile's consent per purpose from every choice of its keys; ``merged_at`` is the time of the profile's
    latest merge (None: never merged). Explicit choices outrank defaults. Within the standing tier, the latest
    choice wins if it was made at or after the merge; before that, a denial by any key wins (the person chooses
    again to lift it). Ties in time are settled towards denial."""
    standing = list(key_choice(choices).values())
    out: dict[str, bool] = {}
    for purpose in sorted({c.purpose for c in standing}):
        mine = [c for c in standing if c.purpose == purpose]
        tier = [c for c in mine if c.explicit] or mine
        latest = max(tier, key=lambda c: (c.at, not c.granted))
        if merged_at is None or latest.at >= merged_at:
            out[purpose] = latest.granted
        else:
            out[purpose] = all(c.granted for c in tier)
    return out


def granted(consent: Mapping[str, bool], purpose: str) -> bool:
    """Whether ``purpose`` is granted, the built-in default where nothing was said."""
    return consent.get(purpose, DEFAULT_CONSENT.get(purpose, False))
