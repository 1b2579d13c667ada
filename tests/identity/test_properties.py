"""Property tests: the protocol computes connected components whatever Kafka does to the messages.

The reference is a plain union-find over each event's identifiers, labelled with the component's
smallest (first_seen, key). The simulator must reach exactly that for any event order, any partition
count, any interleaving of partitions, with restarts from serialised state, duplicate deliveries, workers
that own several partitions and handle the messages of a batch among them at once, ownership moving between
batches, and batches lost in a crash before their commit.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity.graph import Erase, Observe
from identity.rules import IdentityRules
from identity.simulate import GraphSimulator
from tests.identity._support import (
    POOL_TYPES,
    check_matches_reference,
    expected_labels,
    high_limit_rules,
    keyed,
    make_event,
    value_for,
    violations,
)

HIGH = high_limit_rules()
DEFAULT = keyed(IdentityRules.load(None))
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# 1-4 identifiers per event from a pool of 4 types x 6 values: enough collisions for big components.
identifier_sets = st.dictionaries(st.sampled_from(POOL_TYPES), st.integers(0, 5), min_size=1, max_size=4)
timed_events = st.lists(st.tuples(identifier_sets, st.integers(0, 40)), min_size=1, max_size=25)


def build(raw: list[tuple[dict[str, int], int]]) -> list[tuple[dict[str, Any], int]]:
    return [
        (make_event({t: value_for(t, n) for t, n in ids.items()}, messageId=f"m{i}"), ts)
        for i, (ids, ts) in enumerate(raw)
    ]


def simulate(
    rules: IdentityRules,
    events: list[tuple[dict[str, Any], int]],
    partitions: int,
    seed: int,
    budgets: list[int] | None = None,
    restarts: frozenset[int] = frozenset(),
    redeliver: int = 0,
) -> GraphSimulator:
    """Submit events one by one, running ``budgets[i]`` messages in between (None = all at once)."""
    sim = GraphSimulator(rules, partitions=partitions, seed=seed)
    for i, (event, ts) in enumerate(events):
        sim.submit(event, ts_ms=ts)
        if budgets is not None:
            sim.run(max_steps=budgets[i % len(budgets)])
        if i in restarts:
            sim.restart(redeliver=redeliver)
    sim.run()
    return sim


@PROPERTY
@given(
    raw=timed_events,
    data=st.data(),
    partitions=st.sampled_from([1, 4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_components_for_any_order_partitioning_and_interleaving(
    raw: list[tuple[dict[str, int], int]], data: st.DataObject, partitions: int, seed: int
) -> None:
    events = build(raw)
    order = data.draw(st.permutations(events), label="order")
    budgets = data.draw(st.none() | st.lists(st.integers(0, 30), min_size=1, max_size=5), label="budgets")
    sim = simulate(HIGH, order, partitions, seed, budgets)
    check_matches_reference(sim, expected_labels(events, HIGH))
    assert not sim.refusals
    assert sorted(e["messageId"] for e in sim.stitched_events) == sorted(e["messageId"] for e, _ in events)


@PROPERTY
@given(raw=timed_events, data=st.data(), seeds=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)))
def test_profile_ids_identical_across_orders(
    raw: list[tuple[dict[str, int], int]], data: st.DataObject, seeds: tuple[int, int]
) -> None:
    events = build(raw)
    first = simulate(HIGH, events, 1, seeds[0])
    other = simulate(HIGH, data.draw(st.permutations(events)), 4, seeds[1], budgets=[3])
    assert {k: first.profile_of(k) for k in first.states} == {k: other.profile_of(k) for k in other.states}


@PROPERTY
@given(
    raw=timed_events,
    partitions=st.sampled_from([1, 4]),
    seed=st.integers(0, 2**32 - 1),
    budgets=st.lists(st.integers(0, 20), min_size=1, max_size=4),
    restarts=st.frozensets(st.integers(0, 24), max_size=4),
    redeliver=st.integers(0, 15),
)
def test_restart_from_serialised_state_with_redelivery(
    raw: list[tuple[dict[str, int], int]],
    partitions: int,
    seed: int,
    budgets: list[int],
    restarts: frozenset[int],
    redeliver: int,
) -> None:
    events = build(raw)
    sim = simulate(HIGH, events, partitions, seed, budgets, restarts, redeliver)
    # One more crash after everything settled, redelivering a lot: still the same answer.
    sim.restart(redeliver=redeliver)
    sim.run()
    check_matches_reference(sim, expected_labels(events, HIGH))


# Ways to split 4 partitions over workers: one worker owning all, two, one per partition.
OWNERSHIPS = [[{0, 1, 2, 3}], [{0, 1}, {2, 3}], [{0, 3}, {1, 2}], [{0}, {1}, {2}, {3}]]


@PROPERTY
@given(
    raw=timed_events,
    seed=st.integers(0, 2**32 - 1),
    plans=st.lists(
        st.tuples(
            st.integers(0, len(OWNERSHIPS) - 1),  # how partitions are split over workers (changes: rebalances)
            st.integers(1, 12),  # records per batch
            st.none() | st.integers(0, 10),  # local deliveries per batch (None: unbounded)
            st.booleans(),  # False: the batch is lost in a crash before its commit
        ),
        min_size=1,
        max_size=8,
    ),
    restarts=st.frozensets(st.integers(0, 24), max_size=3),
)
def test_batches_of_workers_owning_several_partitions_with_crashes_and_rebalances(
    raw: list[tuple[dict[str, int], int]],
    seed: int,
    plans: list[tuple[int, int, int | None, bool]],
    restarts: frozenset[int],
) -> None:
    """Workers take batches from the partitions they own and handle the messages a batch causes among those
    partitions at once (up to a budget, the rest through the log); ownership moves between batches; a batch
    lost in a crash before its commit leaves nothing and is read again: always the connected components."""
    events = build(raw)
    sim = GraphSimulator(HIGH, partitions=4, seed=seed)
    rounds = 0

    def one_round() -> None:
        nonlocal rounds
        ownership, size, budget, commit = plans[rounds % len(plans)]
        rounds += 1
        for owned in OWNERSHIPS[ownership]:
            # Crashes are spread out so that the run always ends (every other round commits).
            sim.batch(owned, size, budget, commit=commit or rounds % 2 == 0)

    for i, (event, ts) in enumerate(events):
        sim.submit(event, ts_ms=ts)
        one_round()
        if i in restarts:
            sim.restart()
    while sim.pending():
        one_round()
    check_matches_reference(sim, expected_labels(events, HIGH))
    assert sorted(e["messageId"] for e in sim.stitched_events) == sorted(e["messageId"] for e, _ in events)


@PROPERTY
@given(raw=timed_events, seed=st.integers(0, 2**32 - 1), repeats=st.integers(1, 3))
def test_repeated_traffic_on_settled_profiles_takes_the_fast_path(
    raw: list[tuple[dict[str, int], int]], seed: int, repeats: int
) -> None:
    """Once the graph is quiet, events with the same identifiers at later times change nothing and send nothing,
    one step each, whatever the graph looks like; and the answer is still the reference's."""
    events = build(raw)
    sim = simulate(HIGH, events, 4, seed)
    settled = {k: s.to_dict() for k, s in sim.states.items()}
    steps, fast = sim.steps, sim.fast
    later = max(ts for _, ts in events) + 1
    for r in range(repeats):
        for i, (event, _) in enumerate(events):
            sim.submit({**event, "messageId": f"r{r}-{i}"}, ts_ms=later + r)
    sim.run()
    assert sim.steps - steps == sim.fast - fast == repeats * len(events)
    assert {k: s.to_dict() for k, s in sim.states.items()} == settled


# With user ids in the pool, limits do bite.
limited_sets = st.dictionaries(
    st.sampled_from(("user_id", "device_id", "anonymous_id", "email")), st.integers(0, 3), min_size=1, max_size=4
)


@PROPERTY
@given(raw=st.lists(st.tuples(limited_sets, st.integers(0, 40)), min_size=1, max_size=25), seed=st.integers(0, 99))
def test_limits_are_exact_for_sequential_traffic(raw: list[tuple[dict[str, int], int]], seed: int) -> None:
    sim = GraphSimulator(DEFAULT, partitions=4, seed=seed)
    for event, ts in build(raw):
        primary = sim.submit(event, ts_ms=ts)[0]
        merges_before = len(sim.merges)
        sim.run()
        assert not violations(sim, DEFAULT)
        # The event landed on its primary's profile, or on one that was merged away by its own linking.
        stamped = sim.stitched_events[-1]
        assert stamped["messageId"] == event["messageId"]
        assert stamped["profileId"] == sim.profile_of(primary.node) or stamped["profileId"] in {
            m.from_profile for m in sim.merges[merges_before:]
        }
    assert all(r.reason.startswith("limit:") for r in sim.refusals)


@PROPERTY
@given(
    raw=st.lists(st.tuples(limited_sets, st.integers(0, 40)), min_size=1, max_size=25),
    partitions=st.sampled_from([1, 4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_concurrent_limit_overshoot_is_always_reported(
    raw: list[tuple[dict[str, int], int]], partitions: int, seed: int
) -> None:
    sim = simulate(DEFAULT, build(raw), partitions, seed)
    if violations(sim, DEFAULT):
        assert any(r.reason.startswith("race:") for r in sim.refusals)


JUNK = ["null", '"null"', "undefined", "0", "-1", "guest", "[object Object]", "NaN", "", "anonymous", "id"]


@PROPERTY
@given(
    people=st.lists(
        st.tuples(st.sampled_from(JUNK), st.sampled_from(JUNK), st.sampled_from(JUNK)), min_size=2, max_size=12
    ),
    seed=st.integers(0, 999),
)
def test_junk_never_links_people(people: list[tuple[str, str, str]], seed: int) -> None:
    sim = GraphSimulator(DEFAULT, partitions=4, seed=seed)
    for i, (user, device, email) in enumerate(people):
        event = make_event({"anonymous_id": f"person{i}", "user_id": user, "device_id": device, "email": email})
        event["context"]["traits"]["phone"] = user
        sim.submit(event, ts_ms=i)
    sim.run()
    assert sorted(sim.states) == sorted(f"anonymous_id:person{i}" for i in range(len(people)))
    assert len(sim.profiles()) == len(people)


def _component_of(sim: GraphSimulator, key: str) -> set[str]:
    return next(keys for keys in sim.profiles().values() if key in keys)


@PROPERTY
@given(
    raw=timed_events,
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
    budget=st.none() | st.integers(0, 20),
    ownership=st.integers(0, len(OWNERSHIPS) - 1),
)
def test_an_erasure_removes_the_whole_component_and_nothing_else(
    raw: list[tuple[dict[str, int], int]], data: st.DataObject, seed: int, budget: int | None, ownership: int
) -> None:
    """A regulation sends an Erase to every node of the person that exists (what ClickHouse knows of them), in any
    order, while the component's own links may still be in flight (``budget``: every event delivered, only that many
    messages of their handshakes; None: settled, and then one Erase to any one node is enough). Every node of the
    component goes, also those the links in flight create later, every other node ends as it would without the
    erased person, and the erased nodes stay gone after a restart; workers handle batches among their partitions."""
    events = build(raw)
    sim = GraphSimulator(HIGH, partitions=4, seed=seed)
    for event, ts in events:
        sim.submit(event, ts_ms=ts)
    while any(isinstance(m, Observe) and m.event is not None for q in sim.queues for m in q):
        sim.step()  # every event delivered; their links may still be on their way
    sim.run(max_steps=budget)
    expected = expected_labels(events, HIGH)
    victim = data.draw(st.sampled_from(sorted(expected)), label="victim")
    component = {k for k, label in expected.items() if label == expected[victim]}
    known = [victim] if budget is None else sorted(component & set(sim.states))
    for key in data.draw(st.permutations(known), label="erase order"):
        sim.send(Erase(key, "reg_1"))
    while sim.pending():
        for owned in OWNERSHIPS[ownership]:
            sim.batch(owned, 5, 10)
    sim.restart()
    sim.run()
    assert sim.pending() == 0
    rest = {k: label for k, label in expected.items() if k not in component}
    assert {k: state.label for k, state in sim.states.items()} == rest
    for key, state in sim.states.items():  # nothing left points into the erased component
        assert not set(state.neighbors) & component, key


def test_an_erased_person_returning_gets_a_new_profile_not_the_old_one() -> None:
    """Nothing of the erased nodes is left to name them: the same identifiers later are a new person, whose
    profile id is derived afresh (the same id only when the same identifier is again the oldest)."""
    sim = GraphSimulator(HIGH, partitions=4, seed=3)
    sim.submit(make_event({"anonymous_id": "a1", "email": "e1@x.io"}, messageId="m1"), ts_ms=1)
    sim.submit(make_event({"anonymous_id": "a2", "email": "e1@x.io"}, messageId="m2"), ts_ms=2)
    sim.run()
    assert len(sim.states) == 3
    sim.send(Erase("email:e1@x.io", "reg_1"))
    sim.run()
    assert sim.states == {}
    sim.submit(make_event({"anonymous_id": "a9", "email": "e1@x.io"}, messageId="m3"), ts_ms=50)
    sim.run()
    assert set(sim.states) == {"anonymous_id:a9", "email:e1@x.io"}
    assert sim.states["email:e1@x.io"].first_seen_ms == 50
