"""In-memory driver for the stitching protocol: Kafka partitions and the workers' node store, minus the I/O.

Used by the tests to check the protocol's guarantees under adversarial but *Kafka-legal* schedules
(FIFO within a partition, any interleaving across partitions, duplicates, restarts from serialised
state, workers that own several partitions and handle a batch with the messages it causes among them at
once, batches lost in a crash before their transaction committed) and by the benchmarks to count messages
per event without a broker.
"""

from __future__ import annotations

import json
import random
import zlib
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from identity.extract import extract_identifiers
from identity.graph import (
    Erase,
    IdentityChange,
    Merge,
    Message,
    NodeState,
    Observe,
    Refusal,
    Step,
    event_message,
    handle,
    link_locally,
    message_from_dict,
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

    Each message goes to partition ``crc32(node) % partitions`` (stable, unlike ``hash``), is delivered FIFO
    within its partition like a Kafka log, and ``run`` interleaves partitions in an order drawn from
    ``seed``, like independent workers progressing at different speeds. ``batch`` is one worker's batch as
    the stitcher runs it. ``queues`` hold the not yet consumed messages.
    """

    def __init__(self, rules: IdentityRules, partitions: int = 1, seed: int | None = None) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.rules = rules
        self.partitions = partitions
        self.rng = random.Random(seed)
        self.states: dict[str, NodeState] = {}
        self.queues: list[deque[Message]] = [deque() for _ in range(partitions)]
        self.delivered: list[Message] = []
        self.identity_changes: list[IdentityChange] = []
        self.merges: list[Merge] = []
        self.refusals: list[Refusal] = []
        self.stitched_events: list[dict[str, Any]] = []
        self.steps = 0
        self.fast = 0
        self._clock = 0
        self._events = 0

    # ---------------------------------------------------------------------------------------- input

    def partition_of(self, key: str) -> int:
        return zlib.crc32(key.encode("utf-8")) % self.partitions

    def send(self, msg: Message) -> None:
        """Enqueue one message on its node's partition (what producing to the identity topic does)."""
        self.queues[self.partition_of(msg.node)].append(msg)

    def submit(
        self,
        event_or_observes: Mapping[str, Any] | Observe | Iterable[Observe],
        ts_ms: int | None = None,
        message_id: str | None = None,
    ) -> list[Observe]:
        """Enqueue an event (as its one message, see ``event_message``) or ready-made Observes; returns what was
        enqueued.

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
            keys = [ident.key for ident in extract_identifiers(event, self.rules)]
            msg = event_message(keys, event, cause, ts_ms)
            observes = [] if msg is None else [msg]
        else:
            observes = list(event_or_observes)
        for obs in observes:
            self.send(obs)
        return observes

    # ------------------------------------------------------------------------------------- delivery

    def pending(self) -> int:
        return sum(len(q) for q in self.queues)

    def take(self) -> Message | None:
        """Consume the next record of a random non-empty partition (``None`` when everything is quiet)."""
        busy = [i for i, q in enumerate(self.queues) if q]
        if not busy:
            return None
        return self.queues[self.rng.choice(busy)].popleft()

    def step(self) -> bool:
        """Deliver one message from a random non-empty partition; False when everything is quiet."""
        msg = self.take()
        if msg is None:
            return False
        self.deliver(msg)
        return True

    def deliver(self, msg: Message) -> None:
        """Handle one message now, as the worker of the node's partition would, and enqueue its outputs."""
        results = self._handle(msg, {self.partition_of(msg.node)}, self.states.get)
        self._record(msg, results)
        for _, result in results:
            if result.erased:
                self.states.pop(result.state.key, None)
            else:
                self.states[result.state.key] = result.state
            for out in result.out:
                self.send(out)

    def _handle(
        self, msg: Message, owned: Collection[int], lookup: Callable[[str], NodeState | None]
    ) -> list[tuple[NodeState | None, Step]]:
        """(state before, step) of every node a message changes: an event whose every identifier lives on the
        worker's partitions may be linked there in one step (``link_locally``), anything else is ``handle``."""
        if isinstance(msg, Observe) and msg.event is not None:
            keys = [msg.node, *msg.peers]
            if all(self.partition_of(key) in owned for key in keys):
                steps = link_locally(msg, lookup, self.rules)
                if steps is not None:
                    return [(lookup(step.state.key), step) for step in steps]
        state = lookup(msg.node)
        return [(state, handle(state, msg, self.rules))]

    def _record(self, msg: Message, results: list[tuple[NodeState | None, Step]]) -> None:
        """Count one handled message (``steps``; ``fast``: it changed nothing) and keep the facts of its steps."""
        self.delivered.append(msg)
        self.steps += 1
        self.fast += len(results) == 1 and results[0][1].state is results[0][0]
        for _, result in results:
            self.identity_changes.extend(result.identity_changes)
            self.merges.extend(result.merges)
            self.refusals.extend(result.refusals)
            if result.stitched_event is not None:
                self.stitched_events.append(result.stitched_event)

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

    def batch(self, owned: Collection[int], size: int, budget: int | None = None, commit: bool = True) -> int:
        """One batch of a worker that owns the partitions ``owned``, as streams.stitcher runs it.

        Takes up to ``size`` records from the heads of the owned partitions (interleaved at random), handles
        them against a batch-local view of the states, and handles at once every message they cause to a node
        on an owned partition, up to ``budget`` of them; the others are queued like messages to the partitions
        of other workers. With ``commit`` the batch's states, messages and facts are kept together (the
        stitcher's transaction); without, the worker crashed before the commit: nothing of the batch persists
        and its records go back to the head of their partitions, to be read again. Returns the records taken.
        """
        owned = set(owned)
        taken: list[tuple[int, Message]] = []
        while len(taken) < size:
            busy = [p for p in owned if self.queues[p]]
            if not busy:
                break
            partition = self.rng.choice(busy)
            taken.append((partition, self.queues[partition].popleft()))
        view: dict[str, NodeState | None] = {}  # None: erased in this batch
        results: list[tuple[Message, list[tuple[NodeState | None, Step]]]] = []
        outbox: list[Message] = []
        local: deque[Message] = deque(msg for _, msg in taken)
        spare = budget

        def lookup(key: str) -> NodeState | None:
            return view[key] if key in view else self.states.get(key)

        while local:
            msg = local.popleft()
            handled = self._handle(msg, owned, lookup)
            results.append((msg, handled))
            for _, result in handled:
                view[result.state.key] = None if result.erased else result.state
                for out in result.out:
                    # An Erase goes through the log (streams.stitch_batch): behind its sender's earlier messages.
                    here = not isinstance(out, Erase) and (spare is None or spare > 0)
                    if self.partition_of(out.node) in owned and here:
                        local.append(out)
                        spare = None if spare is None else spare - 1
                    else:
                        outbox.append(out)
        if not commit:
            for partition, msg in reversed(taken):
                self.queues[partition].appendleft(msg)
            return len(taken)
        for key, state in view.items():
            if state is None:
                self.states.pop(key, None)
            else:
                self.states[key] = state
        for msg, handled in results:
            self._record(msg, handled)
        for out in outbox:
            self.send(out)
        return len(taken)

    def restart(self, redeliver: int = 0) -> None:
        """Simulate a crash and recovery of every worker.

        All node states are rebuilt from their JSON form (the node store restored from its changelog),
        queued messages are re-read from their JSON form (the Kafka log), and ``redeliver`` randomly
        chosen already-delivered messages are produced again (duplicates).
        """
        self.states = {key: _roundtrip_state(state) for key, state in self.states.items()}
        for i, queue in enumerate(self.queues):
            self.queues[i] = deque(_roundtrip_message(m) for m in queue)
        if redeliver and self.delivered:
            for msg in self.rng.choices(self.delivered, k=redeliver):
                self.send(_roundtrip_message(msg))

    # -------------------------------------------------------------------------------------- results

    def profiles(self) -> dict[str, set[str]]:
        """profile_id -> node keys, from every node's current label."""
        out: dict[str, set[str]] = {}
        for key, state in self.states.items():
            out.setdefault(self.rules.profile_id(state.label), set()).add(key)
        return out

    def profile_of(self, key: str) -> str | None:
        state = self.states.get(key)
        return None if state is None else self.rules.profile_id(state.label)
