"""One batch of the stitcher, without I/O: raw events and identity messages in, records to produce and node states
to keep out.

A worker owns some partitions of the identity graph (streams.stitcher). Each raw event becomes one message to its
primary identifier's node (``identity.graph.event_message``); a message to a node on an owned partition is
handled here at once, together with every message it causes among the owned partitions (up to a budget per
batch, so a merge of two big components cannot make one batch unbounded); a message to a node elsewhere leaves as
a record on the identity-messages topic, on the node's partition. Events whose identifiers are already one
profile take the protocol's fast path: one look at the primary's state, no message, no state write. With the
producer's stitch hint (streams.keys) such an event is not even decoded: its stitched record is the record as read
plus two fields.

What comes out is applied by the caller in one Kafka transaction (the records, the changed node states as
changelog records, the input offsets), so the batch counts entirely or not at all.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from identity.extract import identifier_keys
from identity.graph import (
    Erase,
    Message,
    NodeState,
    Observe,
    Step,
    event_message,
    handle,
    link_locally,
    message_from_dict,
    settled,
)
from identity.rules import IdentityRules
from schemas.validation import invalid_reason
from streams.keys import StitchHint, event_ms, received_ms
from streams.partitioner import partition_for
from streams.topics import Topics

__all__ = ["BatchCounts", "BatchOutput", "OutRecord", "RawEvent", "StitchBatch", "changelog_key"]

OutRecord = tuple[str, int, bytes | None, bytes | None]
"""(topic, partition or -1 for the producer's partitioner, key, value; None: a tombstone)."""

RawEvent = tuple[bytes, bool, bytes | None]
"""A raw event record's (value, validated by its producer: ``CHECKED_HEADER``, its stitch hint or None)."""

ReadState = Callable[[int, str], NodeState | None]
"""(partition, node key) -> the node's committed state, or None for a node never seen."""

Erased = Callable[[tuple[str, ...], int | None], bool]
"""(an event's node keys, its receivedAt in ms) -> whether the privacy ledger erased one of them since
(streams/privacy.py ``PrivacyLedger.erased_before``)."""


def changelog_key(node: str) -> bytes:
    """Node keys in the changelog are JSON strings, as the Faust table this store replaces wrote them."""
    return orjson.dumps(node)


@dataclass
class BatchCounts:
    """What a batch did, for metrics and the bench: events in, how the events handled here were stitched (an event
    is handled on its primary identifier's partition, so maybe by another worker than the one that read it),
    messages handled."""

    events: int = 0  # raw events read
    without_identifiers: int = 0
    deadletters: int = 0
    fast: int = 0  # events whose identifiers were one profile already: no message, no state write
    linked: int = 0  # events linked in one step here (new identifiers, see identity.graph.link_locally)
    protocol: int = 0  # events that started the protocol's handshakes
    handled: int = 0  # messages handled here, the events' own included
    sent: int = 0  # messages that left for a node on a partition this worker does not own (or over the budget)
    erased: int = 0  # raw events of people erased after the event was received (a replay): dropped

    def add(self, other: BatchCounts) -> None:
        for name, value in other.__dict__.items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class BatchOutput:
    records: list[OutRecord] = field(default_factory=list)
    states: dict[str, tuple[int, NodeState | None]] = field(default_factory=dict)
    """Node key -> (partition, new state) for every node the batch changed; None for a node it erased."""
    changelog: dict[int, dict[str, bytes | None]] = field(default_factory=dict)
    """Partition -> node key -> serialised new state, as the changelog records carry it (and the store keeps it); None:
    erased, a tombstone (and a delete in the store)."""
    counts: BatchCounts = field(default_factory=BatchCounts)


class StitchBatch:
    """Handles one batch for a worker owning ``owned`` of the graph's ``partitions``."""

    def __init__(
        self,
        rules: IdentityRules,
        topics: Topics,
        partitions: int,
        owned: set[int],
        read_state: ReadState,
        budget: int,
        erased: Erased | None = None,
    ) -> None:
        self.rules = rules
        self.topics = topics
        self.partitions = partitions
        self.owned = owned
        self.read_state = read_state
        self.erased = erased
        self.spare = budget
        self.out = BatchOutput()
        self._local: deque[Message] = deque()
        self._raw: dict[str, bytes] = {}  # messageId -> the record as read, spliceable, for its stitched record
        self._now_ms = int(time.time() * 1000)
        self._rules_digest = rules.fingerprint

    def run(self, raw: Iterable[RawEvent], messages: Iterable[bytes]) -> BatchOutput:
        """Handle the identity messages, then the raw events one by one, each with everything it causes locally
        before the next: a person's next event then finds the links of the previous one made, and takes the fast
        path."""
        for value in messages:
            self._take_message(value)
        self._drain()
        for value, checked, hint in raw:
            if not (checked and hint is not None and self._take_hinted(value, hint)):
                self._take_event(value, checked)
            self._drain()
        topic = self.topics.identity_nodes
        for node, (partition, state) in self.out.states.items():
            serialised = None if state is None else orjson.dumps(state.to_dict())
            self.out.changelog.setdefault(partition, {})[node] = serialised
            self.out.records.append((topic, partition, changelog_key(node), serialised))
        return self.out

    # ------------------------------------------------------------------------------------------- input

    def _take_message(self, value: bytes) -> None:
        try:
            msg = message_from_dict(orjson.loads(value))
        except (ValueError, KeyError, TypeError) as exc:  # only a foreign producer writes these
            self._deadletter({"reason": f"not an identity message: {exc}", "raw": value.decode("utf-8", "replace")})
            return
        if isinstance(msg, Observe) and msg.event is not None and self._erased_event(msg):
            return  # read before its person was erased, and on its way to another worker since
        self._route(msg, counted=False)

    def _take_hinted(self, value: bytes, raw_hint: bytes) -> bool:
        """An event with its producer's stitch hint: decoded only if it does not take the fast path. False (then
        read the long way) for a hint of other rules, or a record that cannot be stitched by splicing."""
        hint = StitchHint.decode(raw_hint)
        if hint is None or hint.rules != self._rules_digest or not _spliceable(value):
            return False
        self._stitch(hint.keys, hint.ts_ms, hint.received_ms, hint.message_id, value, None)
        return True

    def _erased_event(self, msg: Observe) -> bool:
        if self.erased is None:
            return False
        try:
            erased = self.erased((msg.node, *msg.peers), received_ms(msg.event or {}))
        except (TypeError, ValueError):
            return False
        self.out.counts.erased += erased
        return erased

    def _take_event(self, value: bytes, checked: bool) -> None:
        """``checked``: the collector or the importer validated the event (``CHECKED_HEADER``); other producers'
        events are validated here."""
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            self._deadletter({"reason": "not JSON", "raw": value.decode("utf-8", "replace")})
            return
        reason = None if checked else invalid_reason(event)
        if reason:
            self._deadletter({"reason": reason, "event": event})
            return
        try:
            keys = identifier_keys(event, self.rules)
            ts_ms = event_ms(event)
            message_id = event["messageId"]
            received = received_ms(event)
            spliceable = "profileId" not in event and "identityKey" not in event and _spliceable(value)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a forged or broken "checked" event
            self._deadletter({"reason": f"cannot stitch: {exc!r}", "event": event})
            return
        self._stitch(keys, ts_ms, received, message_id, value if spliceable else None, event)

    def _stitch(
        self,
        keys: tuple[str, ...],
        ts_ms: int,
        received: int | None,
        message_id: str,
        value: bytes | None,
        event: dict[str, Any] | None,
    ) -> None:
        """One raw event, by the fast path or as its primary's first message. ``value``: the record, if its stitched
        form may be the record plus two fields; ``event``: the decoded record, None for not decoded yet."""
        counts = self.out.counts
        if self.erased is not None and self.erased(keys, received):
            counts.erased += 1
            return
        counts.events += 1
        if value is not None:
            self._raw[message_id] = value
        if not keys:
            # Only junk identifiers: the event is kept, attached to no profile.
            counts.without_identifiers += 1
            self._stitched(message_id, event, "", "")
            return
        primary = keys[0]
        if partition_for(primary, self.partitions) in self.owned:
            state = self._lookup(primary)
            if settled(state, keys[1:], ts_ms):
                assert state is not None
                counts.fast += 1
                counts.handled += 1
                self._stitched(message_id, event, self.rules.profile_id(state.label), primary)
                return
        if event is None:
            assert value is not None
            event = orjson.loads(value)
        msg = event_message(keys, event, message_id, ts_ms)
        assert msg is not None
        self._route(msg, counted=False)

    def _route(self, msg: Message, counted: bool = True) -> None:
        """Handle here (owned partition, and budget left for a message the batch itself caused) or send to the
        node's partition."""
        partition = partition_for(msg.node, self.partitions)
        # An Erase the batch causes goes through the log even to an owned partition: it must come after every message
        # its sender sent the node before, and some of those may still wait in the node's partition.
        if partition in self.owned and (not counted or (self.spare > 0 and not isinstance(msg, Erase))):
            self.spare -= counted
            self._local.append(msg)
        else:
            self.out.counts.sent += 1
            self.out.records.append(
                (self.topics.identity_ops, partition, msg.node.encode(), orjson.dumps(msg.to_dict()))
            )

    # ---------------------------------------------------------------------------------------- handling

    def _drain(self) -> None:
        while self._local:
            msg = self._local.popleft()
            self.out.counts.handled += 1
            state = self._lookup(msg.node)
            steps: list[Step] | None = None
            if isinstance(msg, Observe) and msg.event is not None:
                if self._owns(msg.node, *msg.peers):
                    steps = link_locally(msg, self._lookup, self.rules)
                linked = steps is not None
                if steps is None:
                    steps = [handle(state, msg, self.rules)]
                counts = self.out.counts
                if steps[0].state is state:
                    counts.fast += 1
                elif linked:
                    counts.linked += 1
                else:
                    counts.protocol += 1
            else:
                steps = [handle(state, msg, self.rules)]
            for step in steps:
                self._apply(step)

    def _owns(self, *keys: str) -> bool:
        return all(partition_for(key, self.partitions) in self.owned for key in keys)

    def _lookup(self, key: str) -> NodeState | None:
        """A node's state as this batch has it: changed by the batch, else as committed."""
        known = self.out.states.get(key)
        return known[1] if known is not None else self.read_state(partition_for(key, self.partitions), key)

    def _apply(self, step: Step) -> None:
        key = step.state.key
        if step.erased:
            self.out.states[key] = (partition_for(key, self.partitions), None)
        elif step.state is not self._lookup(key):  # else the fast path: nothing changed
            self.out.states[key] = (partition_for(key, self.partitions), step.state)
        for out in step.out:
            self._route(out)
        self._facts(step, key)

    def _facts(self, step: Step, node: str) -> None:
        topics = self.topics
        records = self.out.records
        for ch in step.identity_changes:
            value = {
                "id_type": ch.id_type,
                "id_value": ch.id_value,
                "profile_id": ch.profile_id,
                "first_seen_ms": step.state.first_seen_ms,
                "updated_ms": self._now_ms,
                "version": ch.version,
            }
            records.append((topics.identities, -1, f"{ch.id_type}:{ch.id_value}".encode(), orjson.dumps(value)))
        for m in step.merges:
            # ts_ms is the causing event's time (a CRM row can be years old); merged_ms says when it happened.
            merge = {**m.to_dict(), "merged_ms": self._now_ms}
            records.append((topics.merges, -1, m.from_profile.encode(), orjson.dumps(merge)))
        for r in step.refusals:
            records.append((topics.refusals, -1, r.node.encode(), orjson.dumps(r)))
        if step.stitched_event is not None:
            event = step.stitched_event
            self._stitched(event["messageId"], event, event.get("profileId", ""), node)

    def _stitched(self, message_id: str, event: dict[str, Any] | None, profile_id: str, identity_key: str) -> None:
        """The event's stitched record: the record as read plus two fields (cheaper than encoding the whole event
        again), else the event encoded (handled here after another worker read it, or an unusual record)."""
        raw = self._raw.pop(message_id, None)
        if raw is not None:
            value = b"".join(
                (
                    raw[:-1],
                    b',"profileId":',
                    orjson.dumps(profile_id),
                    b',"identityKey":',
                    orjson.dumps(identity_key),
                    b"}",
                )
            )
        else:
            assert event is not None  # a record taken undecoded is kept in _raw until it is stitched
            event["profileId"] = profile_id
            event["identityKey"] = identity_key
            value = orjson.dumps(event)
        self.out.records.append((self.topics.stitched, -1, message_id.encode(), value))

    def _deadletter(self, body: dict[str, Any]) -> None:
        self.out.counts.deadletters += 1
        self.out.records.append((self.topics.deadletter, -1, None, orjson.dumps(body)))


def _spliceable(raw: bytes) -> bool:
    """A record whose stitched form is the record plus two fields: a non-empty JSON object as the producers write
    it (no trailing space), not naming a profile itself (the two fields would then appear twice)."""
    return raw[-1:] == b"}" and raw[-2:] != b"{}" and b'"profileId"' not in raw and b'"identityKey"' not in raw
