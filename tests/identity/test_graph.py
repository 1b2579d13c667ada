"""Scenario tests of the stitching protocol (identity.graph) driven through the in-memory simulator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from identity.graph import (
    IdentityChange,
    Merge,
    Message,
    NodeState,
    Observe,
    Offer,
    Propose,
    Refusal,
    event_message,
    handle,
    message_from_dict,
    resync,
)
from identity.rules import IdentityRules
from identity.simulate import GraphSimulator, event_ts_ms
from tests.identity._support import (
    check_matches_reference,
    expected_labels,
    high_limit_rules,
    keyed,
    make_event,
    profile_id_for,
    violations,
)

DEFAULT = keyed(IdentityRules.load(None))
SEEDS = range(8)


def resolve(merges: list[Merge], profile: str) -> str:
    """Follow a merge log (applied in order) from ``profile`` to where it ended up."""
    into: dict[str, str] = {}
    for merge in merges:
        into[merge.from_profile] = merge.into_profile
        into.pop(merge.into_profile, None)
    seen = set()
    while profile in into and profile not in seen:
        seen.add(profile)
        profile = into[profile]
    return profile


def knowledge(sim: GraphSimulator) -> dict[str, dict[str, Any]]:
    """Every node's state minus its count of refusals, which redeliveries move."""
    return {k: {**s.to_dict(), "refused": None} for k, s in sim.states.items()}


def settle(sim: GraphSimulator, *events: tuple[dict[str, Any], int]) -> None:
    """Submit and run each event to quiescence before the next (sequential traffic)."""
    for event, ts in events:
        sim.submit(event, ts_ms=ts)
        sim.run()


# ------------------------------------------------------------------------------------- basic flow


def test_single_event_creates_one_profile_and_stamps_the_event() -> None:
    """One worker holds every identifier (one partition): the new person is linked in one step."""
    sim = GraphSimulator(DEFAULT)
    event = make_event({"user_id": "u1", "anonymous_id": "a1", "email": "Ann@X.io"}, messageId="m1")
    sim.submit(event, ts_ms=100)
    sim.run()
    (profile,) = sim.profiles()
    assert sim.profiles()[profile] == {"user_id:u1", "anonymous_id:a1", "email:ann@x.io"}
    # Same-millisecond tie: the smallest key names the profile.
    assert profile == profile_id_for((100, "anonymous_id:a1"))
    (stamped,) = sim.stitched_events
    assert (stamped["messageId"], stamped["profileId"]) == ("m1", profile)
    assert sim.steps == 1 and not sim.merges and not sim.refusals
    assert sorted((c.id_type, c.profile_id, c.version) for c in sim.identity_changes) == [
        ("anonymous_id", profile, 1),
        ("email", profile, 1),
        ("user_id", profile, 1),
    ]
    # A star around the primary.
    assert sorted(sim.states["user_id:u1"].neighbors) == ["anonymous_id:a1", "email:ann@x.io"]
    check_matches_reference(sim, expected_labels([(event, 100)], DEFAULT))


def test_single_event_across_workers_goes_through_the_protocol() -> None:
    """Identifiers on partitions of other workers: the primary stamps the event with its own profile at once, and
    a Merge records that this profile was dissolved (the event follows its identifier to the survivor)."""
    sim = GraphSimulator(DEFAULT, partitions=8, seed=2)
    event = make_event({"user_id": "u1", "anonymous_id": "a1", "email": "Ann@X.io"}, messageId="m1")
    keys = ["user_id:u1", "anonymous_id:a1", "email:ann@x.io"]
    assert len({sim.partition_of(k) for k in keys}) > 1
    sim.submit(event, ts_ms=100)
    sim.run()
    (profile,) = sim.profiles()
    assert profile == profile_id_for((100, "anonymous_id:a1"))
    (stamped,) = sim.stitched_events
    assert stamped["profileId"] == profile_id_for((100, "user_id:u1"))
    assert stamped["profileId"] in {m.from_profile for m in sim.merges}
    assert sim.profile_of("user_id:u1") == profile
    assert sim.steps > 1 and not sim.refusals


def test_new_identifier_of_a_known_person_is_linked_in_one_step() -> None:
    sim = GraphSimulator(DEFAULT)
    settle(sim, (make_event({"user_id": "u1", "anonymous_id": "a1", "email": "ann@x.io"}), 100))
    steps = sim.steps
    settle(sim, (make_event({"user_id": "u1", "anonymous_id": "a2"}, messageId="m2"), 200))
    profile = profile_id_for((100, "anonymous_id:a1"))
    # One step for the link; the grown summary reaches the other two members by an Offer each.
    assert sim.steps - steps == 3
    assert sim.stitched_events[-1]["profileId"] == profile == sim.profile_of("anonymous_id:a2")
    assert all("a2" in s.summary["anonymous_id"] for s in sim.states.values())
    assert not sim.merges


@pytest.mark.parametrize(
    ("ids", "ts", "why"),
    [
        ({"user_id": "u1", "anonymous_id": "a0"}, 50, "the new cookie is older than the component: it names it"),
        ({"user_id": "u1", "anonymous_id": "a2", "email": "x@y.io"}, 200, "a second cookie breaks the limit of 1"),
        ({"email": "new@x.io", "anonymous_id": "a1"}, 200, "the primary is new, the peer is not"),
    ],
)
def test_events_that_may_relabel_or_refuse_are_left_to_the_protocol(ids: dict[str, str], ts: int, why: str) -> None:
    one_cookie = {**DEFAULT.model_dump()["types"], "anonymous_id": {"priority": 8, "limit": 1}}
    rules = (
        keyed(IdentityRules.model_validate({**DEFAULT.model_dump(), "types": one_cookie}))
        if "a2" in str(ids)
        else DEFAULT
    )
    sim = GraphSimulator(rules)
    first = (make_event({"user_id": "u1", "anonymous_id": "a1"}), 100)
    settle(sim, first)
    steps = sim.steps
    settle(sim, (make_event(ids), ts))
    # More than the one step of a local link plus an Offer per neighbour: the protocol's handshakes ran.
    assert sim.steps - steps > 1 + len(sim.states["user_id:u1"].neighbors), why
    if "a2" in str(ids):
        assert [r.reason for r in sim.refusals] == ["limit:anonymous_id"]
        assert sim.profile_of("email:x@y.io") == sim.profile_of("user_id:u1")
    else:
        check_matches_reference(sim, expected_labels([first, (make_event(ids), ts)], rules))


def test_login_joins_the_older_anonymous_profile() -> None:
    sim = GraphSimulator(DEFAULT, partitions=4, seed=1)
    settle(
        sim,
        (make_event({"anonymous_id": "cookie"}), 10),
        (make_event({"user_id": "u1", "anonymous_id": "cookie"}), 50),
    )
    anon_profile = profile_id_for((10, "anonymous_id:cookie"))
    assert sim.profiles() == {anon_profile: {"anonymous_id:cookie", "user_id:u1"}}
    assert [m.into_profile for m in sim.merges] == [anon_profile]
    # A later event of the logged-in user lands on the same profile.
    settle(sim, (make_event({"user_id": "u1"}), 60))
    assert sim.stitched_events[-1]["profileId"] == anon_profile


def test_late_event_moves_the_label_but_versions_stay_monotone() -> None:
    sim = GraphSimulator(high_limit_rules(), partitions=2, seed=3)
    settle(sim, (make_event({"anonymous_id": "b", "device_id": "d"}), 10))
    assert sim.profile_of("device_id:d") == profile_id_for((10, "anonymous_id:b"))
    # An imported event shows the device existed long before.
    settle(sim, (make_event({"device_id": "d"}), 1))
    assert sim.states["device_id:d"].label == (1, "device_id:d")
    assert sim.profile_of("anonymous_id:b") == profile_id_for((1, "device_id:d"))
    changes = [c for c in sim.identity_changes if c.id_type == "anonymous_id"]
    assert [c.version for c in changes] == sorted(c.version for c in changes)
    assert [c.ts_ms for c in changes] == sorted(c.ts_ms for c in changes)
    assert changes[-1].profile_id == profile_id_for((1, "device_id:d"))
    assert any(m.from_profile == profile_id_for((10, "anonymous_id:b")) for m in sim.merges)


def test_event_without_identifiers_has_no_message() -> None:
    assert event_message([], {"type": "track", "userId": "null"}, "m", 1) is None


def test_an_event_is_one_message_to_its_primary() -> None:
    event = make_event({"user_id": "u", "anonymous_id": "a"})
    msg = event_message(["user_id:u", "anonymous_id:a"], event, "m1", 7)
    assert msg == Observe("user_id:u", 7, ["anonymous_id:a"], "m1", event, primary=True)
    sim = GraphSimulator(DEFAULT, partitions=4, seed=0)
    assert sim.submit(event, ts_ms=7, message_id="m1") == [msg]


# ------------------------------------------------------------------------------------ the fast path


def test_event_on_a_settled_profile_costs_one_step_and_no_message() -> None:
    sim = GraphSimulator(DEFAULT, partitions=4, seed=3)
    ids = {"user_id": "u1", "anonymous_id": "a1", "email": "ann@x.io"}
    settle(sim, (make_event(ids), 10))
    before, states = sim.steps, knowledge(sim)
    settle(sim, (make_event(ids, messageId="again"), 20), (make_event({"anonymous_id": "a1"}, messageId="one"), 30))
    assert sim.steps - before == 2 and sim.fast == 2
    assert knowledge(sim) == states
    assert [e["profileId"] for e in sim.stitched_events[-2:]] == [sim.profile_of("user_id:u1")] * 2


@pytest.mark.parametrize(
    ("ids", "ts", "why"),
    [
        ({"user_id": "u1", "device_id": "new"}, 20, "a peer the component does not know"),
        ({"user_id": "u1", "anonymous_id": "a1"}, 5, "older than the component's label: may relabel it"),
        ({"anonymous_id": "a1"}, 8, "older than the primary's own first_seen"),
    ],
)
def test_fast_path_is_not_taken_when_the_event_may_change_something(ids: dict[str, str], ts: int, why: str) -> None:
    sim = GraphSimulator(DEFAULT, partitions=2, seed=1)
    settle(sim, (make_event({"user_id": "u1", "anonymous_id": "a1"}), 10))
    fast = sim.fast
    settle(sim, (make_event(ids), ts))
    assert sim.fast == fast, why
    check_matches_reference(
        sim,
        expected_labels([(make_event({"user_id": "u1", "anonymous_id": "a1"}), 10), (make_event(ids), ts)], DEFAULT),
    )


def test_label_tie_at_the_same_millisecond_is_not_fast() -> None:
    """(ts, peer) equal to the label's time but with a smaller key would become the label: no fast path."""
    rules = high_limit_rules()
    sim = GraphSimulator(rules, partitions=1)
    settle(sim, (make_event({"email": "b@x.io", "device_id": "d"}), 10))
    assert sim.states["device_id:d"].label == (10, "device_id:d")
    settle(sim, (make_event({"email": "b@x.io", "anonymous_id": "a"}), 10))
    assert sim.states["email:b@x.io"].label == (10, "anonymous_id:a")
    fast = sim.fast
    settle(sim, (make_event({"email": "b@x.io", "device_id": "d"}), 10))
    assert sim.fast == fast + 1  # (10, device_id:d) > (10, anonymous_id:a): nothing can move


# -------------------------------------------------------------------------------- limits and junk


def test_junk_identifiers_never_link_people() -> None:
    sim = GraphSimulator(DEFAULT, partitions=4, seed=0)
    for i, junk in enumerate(["null", '"null"', "undefined", "0", "-1", "anonymous", "[object Object]"]):
        event = make_event({"user_id": junk, "anonymous_id": f"person-{i}", "device_id": junk, "email": junk})
        event["context"]["device"]["advertisingId"] = "00000000-0000-0000-0000-000000000000"
        sim.submit(event, ts_ms=i)
    sim.run()
    assert sorted(len(keys) for keys in sim.profiles().values()) == [1] * 7
    assert all(key.startswith("anonymous_id:person-") for key in sim.states)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("partitions", [1, 4])
def test_shared_device_keeps_two_users_apart(seed: int, partitions: int) -> None:
    sim = GraphSimulator(DEFAULT, partitions=partitions, seed=seed)
    settle(
        sim,
        (make_event({"user_id": "u1", "device_id": "tablet"}, messageId="e1"), 10),
        (make_event({"user_id": "u2", "device_id": "tablet"}, messageId="e2"), 20),
    )
    p1, p2 = sim.profile_of("user_id:u1"), sim.profile_of("user_id:u2")
    assert p1 != p2
    assert sim.profile_of("device_id:tablet") == p1
    assert [(r.node, r.peer, r.reason, r.cause) for r in sim.refusals] == [
        ("device_id:tablet", "user_id:u2", "limit:user_id", "e2")
    ]
    # Third events: each user's event still lands on that user's profile.
    settle(
        sim,
        (make_event({"user_id": "u2", "device_id": "tablet"}, messageId="e3"), 30),
        (make_event({"user_id": "u1", "device_id": "tablet"}, messageId="e4"), 40),
    )
    stamped = {e["messageId"]: e["profileId"] for e in sim.stitched_events}
    assert stamped["e3"] == sim.profile_of("user_id:u2") == p2
    assert stamped["e4"] == sim.profile_of("user_id:u1") == p1
    assert not violations(sim, DEFAULT)


def test_one_event_cannot_join_two_people_through_two_peers() -> None:
    """The primary's proposals form a chain, so the second link sees the first one's result."""
    sim = GraphSimulator(DEFAULT, partitions=4, seed=5)
    settle(
        sim,
        (make_event({"user_id": "u1", "device_id": "phone"}), 1),
        (make_event({"user_id": "u3", "anonymous_id": "cookie"}), 2),
        # No user id: the e-mail is the primary; on its own it is compatible with either person.
        (make_event({"email": "x@y.io", "device_id": "phone", "anonymous_id": "cookie"}, messageId="e3"), 3),
    )
    assert sim.profile_of("email:x@y.io") == sim.profile_of("user_id:u1")
    assert sim.profile_of("anonymous_id:cookie") == sim.profile_of("user_id:u3")
    assert sim.profile_of("user_id:u1") != sim.profile_of("user_id:u3")
    assert [(r.node, r.reason) for r in sim.refusals] == [("anonymous_id:cookie", "limit:user_id")]
    assert not violations(sim, DEFAULT)


def test_primary_refuses_locally_when_the_peer_alone_breaks_a_limit() -> None:
    sim = GraphSimulator(DEFAULT)
    settle(sim, (make_event({"user_id": "u1", "email": "a@x.io"}), 1))
    # The e-mail is primary; its component already has u1, so proposing to u2 is pointless.
    sim.submit(Observe("email:a@x.io", 2, ["user_id:u2"], "m2", None, primary=True))
    sim.run()
    assert [(r.node, r.peer, r.reason) for r in sim.refusals] == [("email:a@x.io", "user_id:u2", "limit:user_id")]
    # u2 still exists, as a profile of its own.
    assert sim.profiles()[sim.profile_of("user_id:u2")] == {"user_id:u2"}


def test_anonymous_id_limit_caps_cookie_churn() -> None:
    rules = IdentityRules.model_validate(
        {
            **DEFAULT.model_dump(),
            "types": {**DEFAULT.model_dump()["types"], "anonymous_id": {"priority": 8, "limit": 3}},
        }
    )
    sim = GraphSimulator(rules, partitions=3, seed=2)
    for i in range(6):
        settle(sim, (make_event({"user_id": "u", "anonymous_id": f"c{i}"}), i))
    profile = sim.profile_of("user_id:u")
    assert profile is not None
    assert sim.profiles()[profile] == {
        "user_id:u",
        "anonymous_id:c0",
        "anonymous_id:c1",
        "anonymous_id:c2",
    }
    assert len(sim.refusals) == 3
    assert {e["profileId"] for e in sim.stitched_events[3:]} == {sim.profile_of("user_id:u")}


def test_max_identifiers_per_profile_bounds_a_profile() -> None:
    rules = keyed(IdentityRules.model_validate({**high_limit_rules().model_dump(), "max_identifiers_per_profile": 3}))
    sim = GraphSimulator(rules, partitions=2, seed=4)
    for i in range(5):
        settle(sim, (make_event({"email": "shared@x.io", "anonymous_id": f"a{i}"}), i))
    assert max(len(keys) for keys in sim.profiles().values()) == 3
    assert {r.reason for r in sim.refusals} == {"limit:max_identifiers"}
    assert all(len(s.neighbors) <= 3 for s in sim.states.values())


def test_degree_cap_refuses_beyond_the_neighbour_limit() -> None:
    rules = keyed(IdentityRules.model_validate({**high_limit_rules().model_dump(), "max_identifiers_per_profile": 2}))
    state = NodeState("email:x@y.io", 1, (1, "email:x@y.io"), ["anonymous_id:a", "anonymous_id:b"], {})
    step = handle(state, Propose("email:x@y.io", "anonymous_id:c", (5, "anonymous_id:c"), {}, "m", 5), rules)
    assert [r.reason for r in step.refusals] == ["degree_cap"]
    assert step.state.neighbors == ["anonymous_id:a", "anonymous_id:b"] and step.state.refused == 1
    assert step.out == []


def test_concurrent_links_that_overshoot_a_limit_are_reported() -> None:
    """Two proposals decided on stale summaries: documented limitation, detected where they meet."""
    sim = GraphSimulator(DEFAULT, partitions=1)
    settle(
        sim,
        (make_event({"user_id": "u1", "anonymous_id": "a"}), 1),
        (make_event({"user_id": "u2", "anonymous_id": "b"}), 2),
    )
    # Two events of a new device reach both people before any answer comes back.
    sim.deliver(Observe("device_id:d", 3, ["anonymous_id:a"], "x", None, primary=True))
    sim.deliver(Observe("device_id:d", 4, ["anonymous_id:b"], "y", None, primary=True))
    sim.run()
    assert any(r.reason == "race:user_id" and r.node == "device_id:d" for r in sim.refusals)
    (joined,) = violations(sim, DEFAULT)
    # A component over a limit accepts no further links.
    settle(sim, (make_event({"device_id": "d", "anonymous_id": "z"}), 5))
    assert sim.profile_of("anonymous_id:z") != joined
    assert sim.refusals[-1].reason == "limit:user_id"


# ------------------------------------------------------------------------------ purity and wire form


def test_handle_is_pure() -> None:
    state = NodeState("anonymous_id:a", 5, (5, "anonymous_id:a"), ["device_id:d"], {"anonymous_id": ["a"]})
    before = json.dumps(state.to_dict())
    msg = Offer("anonymous_id:a", "email:e@x.io", (1, "email:e@x.io"), {"email": ["e@x.io"]}, "m", 9)
    step = handle(state, msg, DEFAULT)
    assert json.dumps(state.to_dict()) == before
    assert step.state.label == (1, "email:e@x.io")
    assert step.state.neighbors == ["device_id:d", "email:e@x.io"]
    # The news goes to the other neighbour, and back to the sender, which lacks our anonymous_id.
    assert [(type(m).__name__, m.node) for m in step.out] == [("Offer", "device_id:d"), ("Offer", "email:e@x.io")]
    back = step.out[1]
    assert isinstance(back, Offer) and back.summary == {"anonymous_id": ["a"], "email": ["e@x.io"]}


def test_handle_rejects_state_of_another_node() -> None:
    state = NodeState.new("anonymous_id:a", 1)
    with pytest.raises(ValueError):
        handle(state, Observe("anonymous_id:b", 1, [], "m"), DEFAULT)


def test_offer_with_equal_knowledge_is_silent() -> None:
    state = NodeState("anonymous_id:a", 5, (1, "email:e@x.io"), ["email:e@x.io"], {"anonymous_id": ["a"]})
    msg = Offer("anonymous_id:a", "email:e@x.io", (1, "email:e@x.io"), {"anonymous_id": ["a"]}, "m", 9)
    step = handle(state, msg, DEFAULT)
    assert step.out == [] and step.identity_changes == [] and step.merges == []


def test_offer_with_larger_label_is_answered() -> None:
    state = NodeState("anonymous_id:a", 5, (1, "email:e@x.io"), ["email:e@x.io"], {"anonymous_id": ["a"]})
    msg = Offer("anonymous_id:a", "device_id:d", (7, "device_id:d"), {"anonymous_id": ["a"]}, "m", 9)
    step = handle(state, msg, DEFAULT)
    assert step.out == [Offer("device_id:d", "anonymous_id:a", (1, "email:e@x.io"), {"anonymous_id": ["a"]}, "m", 9)]


def test_wire_roundtrip() -> None:
    messages: list[Message] = [
        Observe("user_id:u", 5, ["anonymous_id:a"], "m1", {"userId": "u", "n": [1, {"x": None}]}, primary=True),
        Observe("anonymous_id:a", 5, ["user_id:u"], "m1"),
        Propose("anonymous_id:a", "user_id:u", (5, "user_id:u"), {"user_id": ["u"]}, "m1", 5, ["device_id:d"]),
        Offer("user_id:u", "anonymous_id:a", (3, "anonymous_id:a"), {"anonymous_id": ["a"]}, "m1", 5),
    ]
    for msg in messages:
        wire = json.loads(json.dumps(msg.to_dict()))
        assert wire["kind"] == msg.kind
        assert message_from_dict(wire) == msg
        assert type(msg).from_dict(wire) == msg
    state = NodeState("user_id:u", 5, (3, "anonymous_id:a"), ["anonymous_id:a"], {"user_id": ["u"]}, 2, 3, 9)
    assert NodeState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    # Rows stored by earlier versions carried an input position: read and ignored.
    assert NodeState.from_dict({**state.to_dict(), "position": 41}) == state
    with pytest.raises(ValueError):
        message_from_dict({"kind": "gossip"})
    for fact in (
        IdentityChange("user_id", "u", "p", 1, 1),
        Merge("p", "q", "m", 1),
        Refusal("a", "b", "limit:user_id", "m", 1),
    ):
        assert json.loads(json.dumps(fact.to_dict()))


def test_observe_from_dict_infers_primary_from_attached_event() -> None:
    wire = {"kind": "observe", "node": "user_id:u", "ts_ms": 1, "peers": [], "cause": "m", "event": {"a": 1}}
    assert message_from_dict(wire) == Observe("user_id:u", 1, [], "m", {"a": 1}, primary=True)


def test_event_ts_ms() -> None:
    assert event_ts_ms({"timestamp": "2024-05-01T10:00:00.250Z"}) == 1714557600250
    assert event_ts_ms({"timestamp": "garbage"}) is None
    assert event_ts_ms({}) is None


# ------------------------------------------------------------------------------------ delivery


def test_resync_repairs_lost_offers() -> None:
    """A state kept while its step's messages were lost (restored from elsewhere) is healed by resync()."""
    rules = high_limit_rules()
    events = [
        (make_event({"anonymous_id": f"a{i % 5}", "device_id": f"d{i % 3}", "email": f"e{i % 4}@x.io"}), 50 - i)
        for i in range(12)
    ]
    sim = GraphSimulator(rules, partitions=4, seed=11)
    for event, ts in events:
        sim.submit(event, ts_ms=ts)
    dropped = 0
    while (msg := sim.take()) is not None:
        if isinstance(msg, Offer) and sim.rng.random() < 0.3:
            sim.states[msg.node] = handle(sim.states.get(msg.node), msg, rules).state  # state kept, messages lost
            dropped += 1
        else:
            sim.deliver(msg)
    assert dropped
    for state in list(sim.states.values()):
        for offer in resync(state):
            sim.send(offer)
    sim.run()
    labels = expected_labels(events, rules)
    assert {k: s.label for k, s in sim.states.items()} == labels
    # A second resync on a settled graph changes nothing.
    before = knowledge(sim)
    for state in list(sim.states.values()):
        for offer in resync(state):
            sim.send(offer)
    sim.run()
    assert knowledge(sim) == before


def test_duplicated_deliveries_change_nothing() -> None:
    rules = high_limit_rules()
    events = [(make_event({"anonymous_id": f"a{i % 4}", "device_id": f"d{i % 3}"}), i) for i in range(10)]
    sim = GraphSimulator(rules, partitions=4, seed=2)
    for event, ts in events:
        sim.submit(event, ts_ms=ts)
    sim.run()
    settled = knowledge(sim)
    for msg in list(sim.delivered):
        sim.send(msg)
    sim.run()
    assert knowledge(sim) == settled
    check_matches_reference(sim, expected_labels(events, rules))
