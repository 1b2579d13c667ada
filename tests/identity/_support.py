"""Shared helpers for the identity tests: event builders, a reference union-find, result checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from identity.extract import extract_identifiers
from identity.graph import Label
from identity.profile_id import ProfileIds
from identity.rules import IdentityRules
from identity.simulate import GraphSimulator

# The simulator and the property tests name profiles as a new install does: with a key.
PROFILE_IDS = ProfileIds("test-install-profile-key")


def keyed(rules: IdentityRules) -> IdentityRules:
    return rules.with_profile_ids(PROFILE_IDS)


def profile_id_for(label: Label) -> str:
    """The profile id of a component with this label, under the tests' key."""
    return PROFILE_IDS(label[1])


# The four types a random event draws from, and how each is written in a Segment event.
POOL_TYPES = ("anonymous_id", "device_id", "advertising_id", "email")


def value_for(id_type: str, n: int) -> str:
    return {
        "anonymous_id": f"a{n}",
        "device_id": f"d{n}",
        "advertising_id": f"ad{n}",
        "email": f"e{n}@x.io",
        "user_id": f"u{n}",
    }[id_type]


def make_event(ids: Mapping[str, str], **extra: Any) -> dict[str, Any]:
    """A Segment track event carrying the given identifiers ({id_type: value})."""
    event: dict[str, Any] = {"type": "track", "event": "Viewed", **extra}
    context: dict[str, Any] = {}
    device: dict[str, Any] = {}
    for id_type, value in ids.items():
        if id_type == "user_id":
            event["userId"] = value
        elif id_type == "anonymous_id":
            event["anonymousId"] = value
        elif id_type == "device_id":
            device["id"] = value
        elif id_type == "advertising_id":
            device["advertisingId"] = value
        elif id_type == "email":
            context.setdefault("traits", {})["email"] = value
        else:
            context.setdefault("traits", {})[id_type] = value
    if device:
        context["device"] = device
    if context:
        event["context"] = context
    return event


def high_limit_rules() -> IdentityRules:
    """The pool types with no per-type limit: no link is ever refused, so components are exact."""
    default = IdentityRules.load(None)
    return keyed(
        IdentityRules.model_validate(
            {
                "types": {t: {"priority": i + 1} for i, t in enumerate(POOL_TYPES)},
                "blocklist": default.blocklist.model_dump(),
                "max_identifiers_per_profile": 10_000,
            }
        )
    )


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def expected_labels(events: Iterable[tuple[dict[str, Any], int]], rules: IdentityRules) -> dict[str, Label]:
    """Reference answer: node key -> min (first_seen, key) of its connected component."""
    uf = UnionFind()
    first_seen: dict[str, int] = {}
    for event, ts in events:
        keys = [ident.key for ident in extract_identifiers(event, rules)]
        for key in keys:
            uf.find(key)
            first_seen[key] = min(ts, first_seen.get(key, ts))
        for other in keys[1:]:
            uf.union(keys[0], other)
    best: dict[str, Label] = {}
    for key, ts in first_seen.items():
        root = uf.find(key)
        best[root] = min(best.get(root, (ts, key)), (ts, key))
    return {key: best[uf.find(key)] for key in first_seen}


def partition_of(labels: Mapping[str, Label]) -> set[frozenset[str]]:
    groups: dict[Label, set[str]] = {}
    for key, label in labels.items():
        groups.setdefault(label, set()).add(key)
    return {frozenset(g) for g in groups.values()}


def check_matches_reference(sim: GraphSimulator, expected: Mapping[str, Label]) -> None:
    """The simulator's final state is exactly the reference components, and its facts agree with it."""
    assert sim.pending() == 0
    assert set(sim.states) == set(expected)
    actual = {key: state.label for key, state in sim.states.items()}
    assert actual == dict(expected)
    assert {frozenset(keys) for keys in sim.profiles().values()} == partition_of(expected)
    for key, label in expected.items():
        assert sim.profile_of(key) == sim.rules.profile_id(label)
    # Edges are symmetric once quiet.
    for key, state in sim.states.items():
        for neighbor in state.neighbors:
            assert key in sim.states[neighbor].neighbors
    # The newest IdentityChange of every identifier names its final profile (what the sink keeps).
    latest: dict[tuple[str, str], tuple[int, str]] = {}
    for change in sim.identity_changes:
        ident = (change.id_type, change.id_value)
        latest[ident] = max(latest.get(ident, (-1, "")), (change.version, change.profile_id))
    assert {f"{t}:{v}": p for (t, v), (_, p) in latest.items()} == {
        k: sim.rules.profile_id(label) for k, label in expected.items()
    }
    # Every profile id ever handed out that no longer exists was announced as merged away.
    handed_out = {c.profile_id for c in sim.identity_changes} | {e["profileId"] for e in sim.stitched_events}
    final = {sim.rules.profile_id(label) for label in expected.values()}
    assert handed_out - final <= {m.from_profile for m in sim.merges}


def violations(sim: GraphSimulator, rules: IdentityRules) -> dict[str, list[str]]:
    """profile_id -> limits its identifiers exceed (counted from the node keys, not the summaries)."""
    out: dict[str, list[str]] = {}
    for profile, keys in sim.profiles().items():
        summary: dict[str, list[str]] = {}
        for key in keys:
            id_type, _, value = key.partition(":")
            summary.setdefault(id_type, []).append(value)
        broken = rules.violations(summary)
        if broken:
            out[profile] = broken
    return out
