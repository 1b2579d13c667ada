"""The stitcher's batch logic without Kafka: routing, the fast path, local links, budgets, dead letters, and the
connected components when several workers pass batches through an in-memory log (any order, ownership moving
between batches, batches lost before their commit)."""

from __future__ import annotations

import random
import time
from collections import deque
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity.graph import Erase, NodeState, event_message
from identity.rules import IdentityRules
from identity.subject_hash import SubjectHasher
from streams.keys import HINT_HEADER, StitchHint, raw_event_record
from streams.partitioner import partition_for
from streams.privacy import LedgerEntry, PrivacyLedger, ledger_record
from streams.stitch_batch import BatchCounts, RawEvent, StitchBatch, changelog_key
from streams.topics import Topics
from tests.identity._support import (
    POOL_TYPES,
    expected_labels,
    high_limit_rules,
    keyed,
    make_event,
    profile_id_for,
    value_for,
)

TOPICS = Topics("t")
DEFAULT = keyed(IdentityRules.load(None))
PARTITIONS = 4
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the time of raw()'s events


def raw(event: dict[str, Any], ts: int | None = None) -> bytes:
    body = {"messageId": f"m-{random.random()}", "timestamp": "2026-01-01T00:00:00.000Z", **event}
    if ts is not None:
        body["timestamp"] = f"2026-01-01T00:00:{ts // 1000:02d}.{ts % 1000:03d}Z"
    return orjson.dumps(body)


def hinted(value: bytes, rules: IdentityRules = DEFAULT) -> RawEvent:
    """A validated record with its stitch hint, as the collector writes it."""
    _, _, _, headers = raw_event_record("", orjson.loads(value), rules)
    return value, True, next(v for n, v in headers if n == HINT_HEADER)  # type: ignore[misc]


class Log:
    """An in-memory stand-in for the topics: per partition, raw events and identity messages; outputs by topic."""

    def __init__(self, partitions: int = PARTITIONS) -> None:
        self.partitions = partitions
        self.raw: list[deque[RawEvent]] = [deque() for _ in range(partitions)]
        self.ops: list[deque[bytes]] = [deque() for _ in range(partitions)]
        self.out: dict[str, list[tuple[int, bytes | None, bytes]]] = {}
        self.states: dict[str, NodeState] = {}  # committed node states (what the changelog holds)
        self.counts = BatchCounts()

    def read(self, partition: int, key: str) -> NodeState | None:
        assert partition_for(key, self.partitions) == partition
        return self.states.get(key)

    def batch(self, rules: IdentityRules, owned: set[int], size: int, budget: int, commit: bool = True) -> int:
        taken_ops = [(p, self.ops[p].popleft()) for p in owned for _ in range(min(size, len(self.ops[p])))]
        taken_raw = [(p, self.raw[p].popleft()) for p in owned for _ in range(min(size, len(self.raw[p])))]
        out = StitchBatch(rules, TOPICS, self.partitions, owned, self.read, budget).run(
            [r for _, r in taken_raw], [m for _, m in taken_ops]
        )
        if not commit:  # lost before the commit: read again from where the log stood
            for p, m in reversed(taken_ops):
                self.ops[p].appendleft(m)
            for p, r in reversed(taken_raw):
                self.raw[p].appendleft(r)
            return len(taken_ops) + len(taken_raw)
        for topic, partition, key, value in out.records:
            if topic == TOPICS.identity_ops:
                assert partition == partition_for(key.decode(), self.partitions)  # type: ignore[union-attr]
                self.ops[partition].append(value)
            else:
                self.out.setdefault(topic, []).append((partition, key, value))
        for node, (_, state) in out.states.items():
            if state is None:
                self.states.pop(node, None)
            else:
                self.states[node] = state
        self.counts.add(out.counts)
        return len(taken_ops) + len(taken_raw)

    def pending(self) -> int:
        return sum(map(len, self.raw)) + sum(map(len, self.ops))

    def values(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, _, v in self.out.get(topic, [])]


def run_one_worker(rules: IdentityRules, events: list[bytes], budget: int = 100_000, hints: bool = False) -> Log:
    log = Log()
    for value in events:
        log.raw[0].append(hinted(value, rules) if hints else (value, True, None))
    while log.pending():
        log.batch(rules, set(range(PARTITIONS)), 100, budget)
    return log


# ---------------------------------------------------------------------------------------------- examples


def test_repeated_events_of_one_person_take_the_fast_path() -> None:
    person = {"userId": "u1", "anonymousId": "a1", "context": {"traits": {"email": "ann@x.io"}}}
    log = run_one_worker(DEFAULT, [raw({"type": "track", "event": "x", **person}) for _ in range(5)])
    assert (log.counts.events, log.counts.linked, log.counts.fast, log.counts.protocol) == (5, 1, 4, 0)
    assert log.counts.handled == 5 and log.counts.sent == 0
    stitched = log.values(TOPICS.stitched)
    assert len({e["profileId"] for e in stitched}) == 1
    assert {e["identityKey"] for e in stitched} == {"user_id:u1"}
    # Three identity changes and three node states, all written by the first event.
    assert sorted(i["id_type"] for i in log.values(TOPICS.identities)) == ["anonymous_id", "email", "user_id"]
    assert len(log.out[TOPICS.identity_nodes]) == 3


def test_changed_states_go_to_their_partition_of_the_changelog() -> None:
    log = run_one_worker(DEFAULT, [raw({"type": "identify", "userId": "u1", "anonymousId": "a1"})])
    for partition, key, value in log.out[TOPICS.identity_nodes]:
        node = orjson.loads(key)  # type: ignore[arg-type]
        assert partition == partition_for(node, PARTITIONS)
        assert key == changelog_key(node)
        assert NodeState.from_dict(orjson.loads(value)) == log.states[node]


def test_messages_to_nodes_of_other_workers_leave_on_their_partition() -> None:
    events = [raw({"type": "track", "event": "x", "anonymousId": f"a{i}", "userId": f"u{i}"}) for i in range(40)]
    log = Log()
    for value in events:
        log.raw[0].append((value, True, None))
    log.batch(DEFAULT, {0}, 100, 100_000)
    # Events whose primary lives elsewhere, and handshakes with peers elsewhere, are on the other partitions' logs.
    assert log.counts.sent == sum(map(len, log.ops)) > 0
    while log.pending():
        for owned in ({0}, {1}, {2}, {3}):
            log.batch(DEFAULT, owned, 100, 100_000)
    assert len(log.values(TOPICS.stitched)) == 40
    labels = expected_labels([(orjson.loads(v), 0) for v in events], DEFAULT)
    assert {k: profile_id_for(s.label) for k, s in log.states.items()} == {
        k: profile_id_for(label) for k, label in labels.items()
    }


def test_a_budget_sends_the_rest_through_the_log() -> None:
    events = [
        raw({"type": "track", "event": "x", "anonymousId": f"a{i % 3}", "context": {"device": {"id": f"d{i}"}}})
        for i in range(30)
    ]
    log = Log()
    for value in events:
        log.raw[0].append((value, True, None))
    log.batch(high_limit_rules(), set(range(PARTITIONS)), 100, budget=5)
    assert log.counts.sent > 0 and sum(map(len, log.ops)) == log.counts.sent
    while log.pending():
        log.batch(high_limit_rules(), set(range(PARTITIONS)), 100, budget=5)
    assert len({s.label for s in log.states.values()}) == 3


def test_bad_records_become_dead_letters_and_the_batch_goes_on() -> None:
    good = raw({"type": "track", "event": "ok", "anonymousId": "a1"})
    log = Log()
    log.raw[0].extend(
        [
            (b"not json", True, None),
            (orjson.dumps({"type": "track", "anonymousId": "a2"}), False, None),  # not validated, no messageId
            (orjson.dumps({"type": "track", "anonymousId": "a3"}), True, None),  # claims validation, cannot be stitched
            (good, True, None),
        ]
    )
    log.ops[0].append(b'{"kind": "gossip"}')
    log.batch(DEFAULT, set(range(PARTITIONS)), 100, 100_000)
    reasons = [d["reason"] for d in log.values(TOPICS.deadletter)]
    assert len(reasons) == 4
    assert reasons[0].startswith("not an identity message")
    assert "not JSON" in reasons and any(r.startswith("event: required") for r in reasons)
    assert any(r.startswith("cannot stitch") for r in reasons)
    assert [e["event"] for e in log.values(TOPICS.stitched)] == ["ok"]


def test_unchecked_events_are_validated_checked_ones_are_not() -> None:
    oversized = raw({"type": "track", "event": "x", "anonymousId": "a1", "properties": {"p": "v" * 300_000}})
    log = Log()
    log.raw[0].extend([(oversized, False, None), (oversized, True, None)])
    log.batch(DEFAULT, set(range(PARTITIONS)), 100, 100_000)
    assert len(log.values(TOPICS.deadletter)) == 1 and len(log.values(TOPICS.stitched)) == 1


def test_junk_identifiers_only_still_store_the_event() -> None:
    log = run_one_worker(DEFAULT, [raw({"type": "track", "event": "x", "anonymousId": "undefined"})])
    (event,) = log.values(TOPICS.stitched)
    assert (event["profileId"], event["identityKey"]) == ("", "")
    assert log.counts.without_identifiers == 1 and not log.states


# ------------------------------------------------------------------------------------------- properties

OWNERSHIPS = [[{0, 1, 2, 3}], [{0, 1}, {2, 3}], [{0, 2}, {1, 3}], [{0}, {1}, {2}, {3}]]
identifier_sets = st.dictionaries(st.sampled_from(POOL_TYPES), st.integers(0, 5), min_size=1, max_size=4)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw_events=st.lists(st.tuples(identifier_sets, st.integers(0, 40)), min_size=1, max_size=25),
    seed=st.integers(0, 2**32 - 1),
    plans=st.lists(
        st.tuples(st.integers(0, len(OWNERSHIPS) - 1), st.integers(1, 8), st.integers(0, 12), st.booleans()),
        min_size=1,
        max_size=6,
    ),
)
def test_workers_reach_the_connected_components(
    raw_events: list[tuple[dict[str, int], int]], seed: int, plans: list[tuple[int, int, int, bool]]
) -> None:
    rng = random.Random(seed)
    rules = high_limit_rules()
    events = [
        (make_event({t: value_for(t, n) for t, n in ids.items()}, messageId=f"m{i}"), ts)
        for i, (ids, ts) in enumerate(raw_events)
    ]
    log = Log()
    for event, ts in events:
        value = raw(event, ts)  # a random half with the producer's stitch hint: both ways reach the same graph
        log.raw[rng.randrange(PARTITIONS)].append(hinted(value, rules) if rng.random() < 0.5 else (value, True, None))
    rounds = 0
    while log.pending():
        ownership, size, budget, commit = plans[rounds % len(plans)]
        rounds += 1
        for owned in OWNERSHIPS[ownership]:
            log.batch(rules, owned, size, budget, commit=commit or rounds % 2 == 0)
        assert rounds < 10_000
    expected = expected_labels([(event, BASE_MS + ts) for event, ts in events], rules)
    assert {k: s.label for k, s in log.states.items()} == expected
    stitched = log.values(TOPICS.stitched)
    assert sorted(e["messageId"] for e in stitched) == sorted(e["messageId"] for e, _ in events)
    latest: dict[str, tuple[int, str]] = {}
    for change in log.values(TOPICS.identities):
        key = f"{change['id_type']}:{change['id_value']}"
        latest[key] = max(latest.get(key, (-1, "")), (change["version"], change["profile_id"]))
    assert {k: p for k, (_, p) in latest.items()} == {k: profile_id_for(label) for k, label in expected.items()}


@pytest.mark.parametrize("owned", [{0, 1, 2, 3}, {0}])
def test_every_event_is_counted_once_where_it_is_handled(owned: set[int]) -> None:
    cookies = [f"a{i % 7}" for i in range(50)]
    log = Log()
    log.raw[0].extend((raw({"type": "track", "event": "x", "anonymousId": c}), True, None) for c in cookies)
    log.batch(DEFAULT, owned, 100, 100_000)
    here = sum(1 for c in cookies if partition_for(f"anonymous_id:{c}", PARTITIONS) in owned)
    c = log.counts
    assert c.events == 50 and c.fast + c.linked + c.protocol == here
    assert c.linked == len({x for x in cookies if partition_for(f"anonymous_id:{x}", PARTITIONS) in owned})
    assert c.sent == 50 - here


def test_a_merge_record_says_when_it_happened_beside_the_time_of_its_event() -> None:
    before = int(time.time() * 1000)
    person = {"type": "identify", "userId": "u1", "anonymousId": "a1"}
    crm_row = {"type": "identify", "userId": "u1", "timestamp": "2019-05-01T00:00:00.000Z"}  # older than the web
    log = run_one_worker(DEFAULT, [raw(person), raw(crm_row)])
    merges = log.values(TOPICS.merges)
    assert len(merges) == 1, "the older row moves the label to the user id: one merge"
    assert merges[0]["event_ms"] == 1_556_668_800_000  # the CRM row's date
    assert merges[0]["merged_ms"] >= before  # the stitcher's clock


def test_events_received_before_their_person_was_erased_are_dropped_and_later_ones_kept() -> None:
    """A replay of the raw topics: the ledger erased anonymous_id:gone at BASE_MS + 5 s, by the server's clock."""
    ledger = PrivacyLedger("127.0.0.1:1", TOPICS.privacy_ledger, SubjectHasher("k"))  # never started: fed here
    h = ledger.hasher("anonymous_id:gone")
    ledger.apply(h, ledger_record(ledger.topic, h, LedgerEntry(erased_at_ms=BASE_MS + 5_000))[2])
    assert ledger.erasing_any

    def received(anon: str, seconds: int, **extra: Any) -> RawEvent:
        at = f"2026-01-01T00:00:{seconds:02d}.000Z"
        value = raw({"type": "track", "event": "E", "anonymousId": anon, "receivedAt": at, **extra})
        return hinted(value) if seconds % 2 else (value, True, None)  # the ledger is consulted on either way

    events = [
        received("gone", 1),  # before the erasure: dropped, also when the client's timestamp says later
        received("gone", 2, timestamp="2026-01-01T00:00:59.000Z"),
        received("other", 2, context={"device": {"id": "d-gone"}}),  # somebody else: kept
        received("gone", 9),  # after the erasure (a returning person): kept
    ]
    out = StitchBatch(
        DEFAULT, TOPICS, PARTITIONS, set(range(PARTITIONS)), lambda p, k: None, 10_000, ledger.erased_before
    ).run(events, [])
    stitched = [orjson.loads(v) for t, _, _, v in out.records if t == TOPICS.stitched]
    assert out.counts.erased == 2
    assert sorted((e["anonymousId"], e["receivedAt"][17:19]) for e in stitched) == [("gone", "09"), ("other", "02")]


# ------------------------------------------------------------------------------------------ stitch hints


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_events=st.lists(st.tuples(identifier_sets, st.integers(0, 40)), min_size=1, max_size=30))
def test_events_with_stitch_hints_are_stitched_exactly_as_without(raw_events: list[tuple[dict[str, int], int]]) -> None:
    rules = high_limit_rules()
    events = [
        raw(make_event({t: value_for(t, n) for t, n in ids.items()}, messageId=f"m{i}"), ts)
        for i, (ids, ts) in enumerate(raw_events)
    ]
    plain = run_one_worker(rules, events)
    with_hints = run_one_worker(rules, events, hints=True)
    assert with_hints.out[TOPICS.stitched] == plain.out[TOPICS.stitched]  # byte for byte
    assert with_hints.states == plain.states
    assert with_hints.counts == plain.counts


def test_a_hint_of_other_rules_or_a_broken_one_is_not_trusted() -> None:
    value = raw({"type": "identify", "userId": "u1", "anonymousId": "a1"})
    message_id = orjson.loads(value)["messageId"]
    other_rules = StitchHint("another-rule-set", BASE_MS, None, message_id, ("user_id:somebody-else",)).encode()
    for hint in (other_rules, b"[1, 2]", b"not json", b'["x"]'):
        log = Log()
        log.raw[0].append((value, True, hint))
        log.batch(DEFAULT, set(range(PARTITIONS)), 100, 100_000)
        (event,) = log.values(TOPICS.stitched)
        assert event["identityKey"] == "user_id:u1" and "user_id:somebody-else" not in log.states
        assert sorted(log.states) == ["anonymous_id:a1", "user_id:u1"]


def test_a_hinted_event_on_the_fast_path_is_never_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    person = {"userId": "u1", "anonymousId": "a1", "context": {"traits": {"email": "ann@x.io"}}}
    events = [raw({"type": "track", "event": "x", **person}) for _ in range(5)]
    hints = [hinted(v) for v in events]
    decoded: list[bytes] = []

    class CountingJson:
        def __getattr__(self, name: str) -> Any:
            return getattr(orjson, name)

        @staticmethod
        def loads(value: bytes) -> Any:
            decoded.append(value)
            return orjson.loads(value)

    monkeypatch.setattr("streams.stitch_batch.orjson", CountingJson())
    log = Log()
    log.raw[0].extend(hints)
    log.batch(DEFAULT, set(range(PARTITIONS)), 100, 100_000)
    assert (log.counts.linked, log.counts.fast) == (1, 4)
    assert [v for v in decoded if v in events] == events[:1]  # the linking event only
    assert len(log.values(TOPICS.stitched)) == 5


def test_an_erase_deletes_the_nodes_of_the_person_and_tombstones_them_in_the_changelog() -> None:
    """Through the identity-messages topic, like the protocol's messages: from one node to all of the component,
    across workers, and each erased node leaves a tombstone on its partition of the changelog."""
    ann = {"userId": "u1", "anonymousId": "a1", "context": {"traits": {"email": "ann@x.io"}}}
    bob = {"userId": "u2", "anonymousId": "b1"}
    log = run_one_worker(DEFAULT, [raw({"type": "track", "event": "x", **p}) for p in (ann, bob)])
    assert set(log.states) == {"user_id:u1", "anonymous_id:a1", "email:ann@x.io", "user_id:u2", "anonymous_id:b1"}
    log.out.clear()
    target = "email:ann@x.io"
    log.ops[partition_for(target, PARTITIONS)].append(orjson.dumps(Erase(target, "reg_1").to_dict()))
    while log.pending():
        for owned in ({0, 1}, {2, 3}):
            log.batch(DEFAULT, owned, 100, 100_000)
    assert set(log.states) == {"user_id:u2", "anonymous_id:b1"}
    tombstones = {(p, orjson.loads(k)) for p, k, v in log.out[TOPICS.identity_nodes] if v is None}
    erased = ("user_id:u1", "anonymous_id:a1", "email:ann@x.io")
    assert {k for _, k in tombstones} == set(erased)
    assert all(p == partition_for(k, PARTITIONS) for p, k in tombstones)
    assert TOPICS.identities not in log.out  # no identity change: the regulation tombstones those itself


def test_an_event_in_flight_to_another_worker_when_its_person_was_erased_is_dropped_there() -> None:
    """An event read before the erasure and sent on as its primary's Observe passed the ledger where it was read; the
    worker that receives the Observe asks the ledger again, by the same receivedAt rule as a replay."""
    ledger = PrivacyLedger("127.0.0.1:1", TOPICS.privacy_ledger, SubjectHasher("k"))  # never started: fed here
    h = ledger.hasher("email:gone@x.io")
    ledger.apply(h, ledger_record(ledger.topic, h, LedgerEntry(erased_at_ms=BASE_MS + 5_000))[2])

    def observe(seconds: int) -> bytes:
        event = orjson.loads(raw({"type": "track", "event": "E", "anonymousId": f"c{seconds}"}))
        event["receivedAt"] = f"2026-01-01T00:00:{seconds:02d}.000Z"
        msg = event_message(["email:gone@x.io", f"anonymous_id:c{seconds}"], event, event["messageId"], BASE_MS)
        assert msg is not None
        return orjson.dumps(msg.to_dict())

    out = StitchBatch(
        DEFAULT, TOPICS, PARTITIONS, set(range(PARTITIONS)), lambda p, k: None, 10_000, ledger.erased_before
    ).run([], [observe(1), observe(9)])
    stitched = [orjson.loads(v) for t, _, _, v in out.records if t == TOPICS.stitched]
    assert out.counts.erased == 1
    assert [e["anonymousId"] for e in stitched] == ["c9"]
