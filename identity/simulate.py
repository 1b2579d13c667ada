"""In-memory driver for the stitching protocol: Kafka partitions and a Faust table, minus the I/O.

Used by the tests to check the protocol's guarantees under adversarial but *Kafka-legal* schedules
(FIFO within a partition, any interleaving across partitions, duplicates, restarts from serialised
state, crashes that persist states but lose a batch's outputs and replay its input) and by the benchmarks
to count messages per event without a broker.
"""

from __future__ import annotations

import json
import random
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from identity.graph import (
    IdentityChange,
    Merge,
    Message,
    NodeState,
    Observe,
    Refusal,
    handle,
    message_from_dict,
    observes_for_event,
    profile_id_for,
)
from identity.rules import IdentityRules

__all__ = ["GraphSimulator", "event_ts_ms"]


def event_ts_ms(event: Mapping[str, Any]) -> int | None:
    """Event time in epoch milliseconds from the Segment ``timestamp`` (ISO 8601), if present and valid."""
    raw = event.get("timestamp") or event.get("originalTimestamp")
    if not isinstance(raw, str):
        return None
    try:
        return int(datetime.fromisoformat(raw).timestamp() * 1000)
    except ValueError:
        return None


def _roundtrip_state(state: NodeState) -> NodeState:
    return NodeState.from_dict(json.loads(json.dumps(state.to_dict())))


def _roundtrip_message(msg: Message) -> Message:
    return message_from_dict(json.loads(json.dumps(msg.to_dict())))


class GraphSimulator:
    """Runs ``identity.graph.handle`` over an in-memory set of partitions.

    Each message goes to partition ``crc32(node) % partitions`` (stable, unlike ``hash``), gets the next
    position (offset) of that partition, is delivered FIFO within its partition like a Kafka log, and
    ``run`` interleaves partitions in an order drawn from ``seed``, like independent workers progressing at
    different speeds. ``queues`` hold the not yet consumed ``(position, message)`` records.
    """

    def __init__(self, rules: IdentityRules, partitions: int = 1, seed: int | None = None) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.rules = rules
        self.partitions = partitions
        self.rng = random.Random(seed)
        self.states: dict[str, NodeState] = {}
        self.queues: list[deque[tuple[int, Message]]] = [deque() for _ in range(partitions)]
        self.next_position = [0] * partitions
        self.delivered: list[Message] = []
        self.identity_changes: list[IdentityChange] = []
        self.merges: list[Merge] = []
        self.refusals: list[Refusal] = []
        self.stitched_events: list[dict[str, Any]] = []
        self.steps = 0
        self._clock = 0
        self._events = 0

    # ---------------------------------------------------------------------------------------- input

    def partition_of(self, key: str) -> int:
        return zlib.crc32(key.encode("utf-8")) % self.partitions

    def send(self, msg: Message) -> None:
        """Enqueue one message on its node's partition (what producing to the identity topic does)."""
        partition = self.partition_of(msg.node)
        self.queues[partition].append((self.next_position[partition], msg))
        self.next_position[partition] += 1

    def submit(
        self,
        event_or_observes: Mapping[str, Any] | Observe | Iterable[Observe],
        ts_ms: int | None = None,
        message_id: str | None = None,
    ) -> list[Observe]:
        """Enqueue an event (as its Observes) or ready-made Observes; returns what was enqueued.

        For an event, the time is ``ts_ms``, else its ISO ``timestamp``, else a counter that increases
        with each submission; the cause is ``message_id``, else ``messageId``, else a counter.
        """
        if isinstance(event_or_observes, Observe):
            observes = [event_or_observes]
        elif isinstance(event_or_observes, Mapping):
            event = event_or_observes
            self._events += 1
            if ts_ms is None:
                ts_ms = event_ts_ms(event)
            if ts_ms is None:
                self._clock += 1
                ts_ms = self._clock
            cause = message_id or str(event.get("messageId") or f"sim-{self._events}")
            observes = observes_for_event(event, self.rules, cause, ts_ms)
        else:
            observes = list(event_or_observes)
        for obs in observes:
            self.send(obs)
        return observes

    # ------------------------------------------------------------------------------------- delivery

    def pending(self) -> int:
        return sum(len(q) for q in self.queues)

    def take(self) -> tuple[int, Message] | None:
        """Consume the next record of a random non-empty partition (``None`` when everything is quiet)."""
        busy = [i for i, q in enumerate(self.queues) if q]
        if not busy:
            return None
        return self.queues[self.rng.choice(busy)].popleft()

    def step(self) -> bool:
        """Deliver one message from a random non-empty partition; False when everything is quiet."""
        record = self.take()
        if record is None:
            return False
        position, msg = record
        self.deliver(msg, position)
        return True

    def deliver(self, msg: Message, position: int | None = None) -> None:
        """Handle one message now, as the partition's worker would, and enqueue its outputs."""
        result = handle(self.states.get(msg.node), msg, self.rules, position)
        self.states[msg.node] = result.state
        self.delivered.append(msg)
        self.steps += 1
        self.identity_changes.extend(result.identity_changes)
        self.merges.extend(result.merges)
        self.refusals.extend(result.refusals)
        if result.stitched_event is not None:
            self.stitched_events.append(result.stitched_event)
        for out in result.out:
            self.send(out)

    def run(self, max_steps: int | None = None, safety: int = 5_000_000) -> int:
        """Deliver until quiet (or ``max_steps``); returns the number delivered.

        ``safety`` turns a non-terminating protocol into a test failure instead of a hang.
        """
        done = 0
        while max_steps is None or done < max_steps:
            if not self.step():
                break
            done += 1
            if done >= safety:
                raise RuntimeError(f"identity protocol did not settle after {done} messages")
        return done

    def restart(self, redeliver: int = 0) -> None:
        """Simulate a crash and recovery of every worker.

        All node states are rebuilt from their JSON form (a Faust table restored from its changelog),
        queued messages are re-read from their JSON form (the Kafka log), and ``redeliver`` randomly
        chosen already-delivered messages are produced again (at-least-once: uncommitted offsets).
        """
        self.states = {key: _roundtrip_state(state) for key, state in self.states.items()}
        for i, queue in enumerate(self.queues):
            self.queues[i] = deque((position, _roundtrip_message(m)) for position, m in queue)
        if redeliver and self.delivered:
            for msg in self.rng.choices(self.delivered, k=redeliver):
                self.send(_roundtrip_message(msg))

    def crash(self, batch: int = 1, partial: bool = False) -> int:
        """Simulate a worker that dies after writing a batch's states but before producing its outputs.

        Takes up to ``batch`` records from the head of one random non-empty partition and handles them in
        order against a batch-local cache of states, as the agent does. Then the crash: the new states are
        persisted (with ``partial``, each touched node's new state independently, as a store that got part
        of its writes), every output message and fact of the batch is lost, and the records go back to the
        head of their partition with their positions, as Kafka redelivers from the last committed offset.
        Returns the number of records taken (0 when everything is quiet).
        """
        busy = [i for i, q in enumerate(self.queues) if q]
        if not busy:
            return 0
        queue = self.queues[self.rng.choice(busy)]
        taken = [queue.popleft() for _ in range(min(batch, len(queue)))]
        cache: dict[str, NodeState] = {}
        for position, msg in taken:
            state = cache.get(msg.node, self.states.get(msg.node))
            cache[msg.node] = handle(state, msg, self.rules, position).state
        for key, state in cache.items():
            if not partial or self.rng.random() < 0.5:
                self.states[key] = _roundtrip_state(state)
        queue.extendleft(reversed(taken))
        return len(taken)

    # -------------------------------------------------------------------------------------- results

    def profiles(self) -> dict[str, set[str]]:
        """profile_id -> node keys, from every node's current label."""
        out: dict[str, set[str]] = {}
        for key, state in self.states.items():
            out.setdefault(profile_id_for(state.label), set()).add(key)
        return out

    def profile_of(self, key: str) -> str | None:
        state = self.states.get(key)
        return None if state is None else profile_id_for(state.label)
