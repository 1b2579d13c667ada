"""Consent: category names to purposes, the shapes refused, the stamp, and the fold (property tests against a
reference that replays choices and the merge in time order)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.audience import Purpose
from schemas.consent import (
    DEFAULT_CONSENT,
    PURPOSES,
    Choice,
    normalise_preferences,
    profile_consent,
    purpose_of,
    stamp_consent,
)
from schemas.errors import EventError
from schemas.segment import accept_batch, accept_event

T0 = datetime(2026, 11, 1, tzinfo=UTC)
KEYS = ["user_id:u1", "email:a@x.io", "anonymous_id:c1", "anonymous_id:c2"]


def test_segment_category_names_map_to_purposes() -> None:
    assert {purpose_of(n) for n in ("Advertising", "Marketing", "C0004", "ad_storage", "Targeting")} == {"advertising"}
    assert {purpose_of(n) for n in ("Analytics", "performance", "analytics_storage")} == {"analytics"}
    assert {purpose_of(n) for n in ("Functional", "Personalization", "personalisation")} == {"personalization"}
    assert {purpose_of(n) for n in ("Strictly Necessary", "essential")} == {"necessary"}
    assert purpose_of(" Social Media ") == "social media"
    assert normalise_preferences({"Advertising": True, "Marketing": False}) == {"advertising": False}


def test_the_purpose_literal_lists_the_purposes() -> None:
    assert Purpose.__args__ == PURPOSES  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("consent", "loc"),
    [
        ("yes", "context.consent"),
        ({"categoryPreferences": ["Advertising"]}, "context.consent.categoryPreferences"),
        ({"categoryPreferences": {"Advertising": "true"}}, "context.consent.categoryPreferences.Advertising"),
    ],
)
@pytest.mark.parametrize("event_type", ["track", "page", "screen", "identify", "group", "alias"])
def test_a_bad_consent_shape_is_refused_naming_the_field(consent: Any, loc: str, event_type: str) -> None:
    event = {"type": event_type, "userId": "u1", "anonymousId": "c1", "event": "E", "previousId": "p", "groupId": "g"}
    with pytest.raises(EventError) as info:
        accept_event({**event, "context": {"consent": consent}})
    assert loc in [e.loc for e in info.value.errors]
    good, bad = accept_batch({"batch": [{**event, "context": {"consent": consent}}]})  # a batch names the item
    assert (good, [e.loc for item in bad for e in item.errors]) == ([], [f"batch[0].{loc}"])


def test_the_stamp_names_purposes_and_the_source_default_for_the_rest() -> None:
    context: dict[str, Any] = {"consent": {"categoryPreferences": {"Marketing": True}, "purposes": {"x": True}}}
    stamp_consent(context, {**DEFAULT_CONSENT, "analytics": False})
    assert context["consent"]["purposes"] == {"advertising": True}
    assert context["consent"]["defaults"] == {"necessary": True, "analytics": False, "personalization": True}
    bare: dict[str, Any] = {}
    stamp_consent(bare)
    assert bare == {
        "consent": {"defaults": {"necessary": True, "analytics": True, "personalization": True, "advertising": False}}
    }


# ---- the fold ---------------------------------------------------------------------------------------------------

choices_st = st.lists(
    st.tuples(st.sampled_from(KEYS), st.sampled_from(["advertising", "analytics"]), st.booleans(), st.booleans()),
    min_size=1,
    max_size=14,
)


def timed(raw: list[tuple[str, str, bool, bool]], seed: int) -> list[Choice]:
    """Distinct times (minutes 1, 2, ...) in a shuffled order."""
    minutes = list(range(1, len(raw) + 1))
    random.Random(seed).shuffle(minutes)
    return [
        Choice(key, purpose, granted, T0 + timedelta(minutes=m), explicit, f"m{m}")
        for (key, purpose, granted, explicit), m in zip(raw, minutes, strict=True)
    ]


def reference(choices: list[Choice], merged_at: datetime | None) -> dict[str, bool]:
    """Every key its own profile until the merge joins them all: replay in time order. State per purpose is
    (granted, explicit); a default changes only a state that is not explicit; the merge keeps, per purpose, the
    highest tier any side holds and ANDs the sides of that tier."""
    sides: dict[str, dict[str, tuple[bool, bool]]] = {}
    merged: dict[str, tuple[bool, bool]] | None = None
    events: list[tuple[datetime, int, Choice | None]] = [(c.at, 1, c) for c in choices]
    if merged_at is not None:
        events.append((merged_at, 0, None))
    for _, _, c in sorted(events, key=lambda e: (e[0], e[1])):
        if c is None:
            merged = {}
            for purpose in {p for side in sides.values() for p in side}:
                held = [side[purpose] for side in sides.values() if purpose in side]
                tier = max(explicit for _, explicit in held)
                merged[purpose] = (all(g for g, e in held if e == tier), tier)
            continue
        state = merged if merged is not None else sides.setdefault(c.key, {})
        known = state.get(c.purpose)
        if known is None or c.explicit or not known[1]:
            state[c.purpose] = (c.granted, c.explicit)
    if merged is None:  # never merged: one profile all along, which is the same replay with one side
        return reference(choices, T0)
    return {p: g for p, (g, _) in merged.items()}


@settings(max_examples=300, deadline=None)
@given(raw=choices_st, merge_minute=st.one_of(st.none(), st.integers(0, 15)), seed=st.integers(0, 10**6))
def test_the_fold_equals_the_replay_whatever_the_order(
    raw: list[tuple[str, str, bool, bool]], merge_minute: int | None, seed: int
) -> None:
    choices = timed(raw, seed)
    merged_at = None if merge_minute is None else T0 + timedelta(minutes=merge_minute, seconds=30)
    got = profile_consent(choices, merged_at)
    assert got == reference(choices, merged_at)
    random.Random(seed).shuffle(choices)  # the order choices (and keys) are read in changes nothing
    assert profile_consent(choices, merged_at) == got


@settings(max_examples=200, deadline=None)
@given(raw=choices_st, seed=st.integers(0, 10**6))
def test_a_denial_before_the_merge_wins_until_a_choice_after_it(
    raw: list[tuple[str, str, bool, bool]], seed: int
) -> None:
    choices = [*timed(raw, seed), Choice("user_id:u9", "advertising", False, T0, True, "deny")]
    merged_at = T0 + timedelta(hours=1)  # after every choice
    assert profile_consent(choices, merged_at)["advertising"] is False
    later = Choice(KEYS[seed % len(KEYS)], "advertising", True, merged_at + timedelta(seconds=1), True, "again")
    assert profile_consent([*choices, later], merged_at)["advertising"] is True
    default_later = Choice("user_id:u1", "advertising", True, merged_at + timedelta(minutes=5), False, "default")
    assert profile_consent([*choices, default_later], merged_at)["advertising"] is False  # a default is no choice


def test_a_tie_in_time_goes_to_denial() -> None:
    yes, no = (Choice(k, "analytics", g, T0, True) for k, g in (("user_id:u1", True), ("email:a@x.io", False)))
    assert profile_consent([yes, no], None) == {"analytics": False}
    assert profile_consent([no, yes], None) == {"analytics": False}
