"""Streaming, partitioned identity stitching: connected components by min-label propagation.

Why this shape
--------------
Every identifier (``email:ann@example.com``, ``anonymous_id:abc``...) is a *node*. Its state lives in
one Faust table partition, keyed by the node key, and every message to a node is produced to one topic
keyed by the target node key; so one worker owns a node and sees its messages in order (FIFO per
partition), and no worker ever sees the whole graph. ``handle`` is the whole per-node program: a pure
function ``(state, message) -> (new state, messages to send, facts to record)``, so the agent is a thin
loop and the protocol can be tested exhaustively in memory (``identity.simulate``).

A profile is a connected component of accepted links. Its id is derived from the component's *label*,
the smallest ``(first_seen_ms, node_key)`` in it: the oldest identifier names the profile, so the
profile id is stable while new identifiers join, and two components that meet converge on the older
one's id whatever order the messages arrive in. How the label's node key becomes an id (keyed with the install's
secret, or the unkeyed derivation of older installs) is the rules' ``profile_ids`` (identity/profile_id.py).

Protocol (messages are routed to ``msg.node``)
----------------------------------------------
* ``Observe`` - an event mentioned the identifier. Creates the node or lowers its ``first_seen_ms``. An
  event becomes one message, its *primary*'s Observe (strongest identifier, ``primary=True``, carrying the
  event and the other identifiers as ``peers``: ``event_message``), routed to the primary's node, and only
  the primary starts linking, so an event makes one handshake, not one per pair.
  *Fast path*: when the primary already knows every peer as a member of its component (each peer's value is
  in its summary) and the event is not older than anything it could relabel (``(ts_ms, peer)`` not below the
  component's label for every peer, and ``ts_ms`` not below the primary's own first_seen), the event can
  change nothing: it is stamped with the primary's profile and the step changes no state and sends nothing.
  (A peer's own first_seen is then not lowered: it can never name the component, and only labels matter.)
  Otherwise the primary sends every peer that is not settled so an Observe of its own (creating it, or
  lowering its first_seen) and starts the link chain below with the peers outside its component.
* ``Propose`` - "sender wants an edge to node". The receiver checks the identifier limits on the union of
  both components' summaries; it refuses (``Refusal``, no edge) or accepts (edge, union, min label,
  ``Offer`` back). The primary does not propose to all peers at once: the proposals of one event form a
  *chain* (``then``); each receiver forwards the rest after deciding, carrying the summary as it stands
  after its decision. So the links of one event are decided one after the other with full knowledge,
  and an event can never join two people through two peers that each looked harmless alone.
* ``Offer`` - "sender, linked to node, tells node its label and summary". Labels only decrease and
  summaries only grow (``IdentityRules.union`` is a join), and a node only speaks when it changed or when
  its peer is missing something, so propagation terminates.
* ``Erase`` - a privacy regulation erased the node's person: the node's state is deleted (``Step.erased``), and
  it passes the Erase on to every node it may have sent anything to, so the whole component goes (see ``Erase``).

Guarantees: with no limit conflicts the final components equal the connected components of the
events' identifiers, labelled with the component minimum, for any arrival order, partitioning or
interleaving, with duplicated deliveries, and across restarts from serialised state (tests/identity).
Limits are exact when the events touching one component are processed one after the other; two
*concurrent* events reaching the same component through different nodes decide on summaries that do not
include each other yet and can overshoot a limit. That is detected where the two summaries meet and
reported as a ``Refusal`` with reason ``race:<type>`` (links are never undone: a label cannot be
un-propagated); a component over a limit then accepts no further links.

Delivery: duplicated messages are harmless (every handler is idempotent). What the handlers cannot repair
is a node state persisted while the messages of the step that made it were lost, so the agent commits a
step's new state, its messages and its facts together or not at all (one Kafka transaction per batch,
streams.stitcher). ``resync(state)`` re-announces a node to its neighbours, for a state restored from
somewhere else than the changelog. A lost ``Propose`` is retried by the next event that mentions the pair
(the primary proposes to every peer it is not linked to yet).

For the agent
-------------
For each event: ``event_message(keys, event, message_id, ts_ms)`` (``keys`` from
``identity.extract.extract_identifiers``) and route it to the partition of its ``node``. For each message
addressed to a node: ``step = handle(store.get(msg.node), msg, rules)``; route every ``step.out`` to its
``node``, store ``step.state`` under ``msg.node`` unless it is the state given (nothing changed), write
``step.identity_changes`` / ``merges`` / ``refusals``, forward ``step.stitched_event`` (the event with
``profileId``). ``ts_ms`` should be a trustworthy event time (a far-future client clock would otherwise make
an identifier "oldest" for ever). Same-millisecond ties are broken by node key, so a brand-new person's first
event is stamped with its primary's profile and a ``Merge`` may follow at once; sinks re-attribute by
following ``Merge`` records (and ``IdentityChange`` for identifiers).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from identity.rules import IdentityRules

__all__ = [
    "Erase",
    "IdentityChange",
    "Label",
    "Merge",
    "Message",
    "NodeState",
    "Observe",
    "Offer",
    "Propose",
    "Refusal",
    "Step",
    "event_message",
    "handle",
    "message_from_dict",
    "resync",
    "settled",
]

Label = tuple[int, str]
"""``(first_seen_ms, node_key)`` of a component's oldest identifier; the smaller label wins."""


def _label(raw: Any) -> Label:
    ts, key = raw
    return (int(ts), str(key))


def _summary(raw: Mapping[str, Any] | None) -> dict[str, list[str]]:
    return {str(t): sorted({str(v) for v in values}) for t, values in (raw or {}).items() if values}


def _split(key: str) -> tuple[str, str]:
    """(type, value) of a node key, as ``Identifier.from_key`` reads it (the first colon splits)."""
    id_type, sep, value = key.partition(":")
    if not sep or not id_type:
        raise ValueError(f"not an identifier key: {key!r}")
    return id_type, value


def _own_summary(key: str) -> dict[str, list[str]]:
    id_type, value = _split(key)
    return {id_type: [value]}


def _summary_of(keys: list[str]) -> dict[str, list[str]]:
    """The summary of a set of node keys on their own (uncapped: callers check the limits)."""
    out: dict[str, list[str]] = {}
    for key in keys:
        id_type, value = _split(key)
        out.setdefault(id_type, []).append(value)
    return {t: sorted(set(values)) for t, values in out.items()}


# --------------------------------------------------------------------------------------------- state


@dataclass(slots=True)
class NodeState:
    """What one identifier node remembers (one row of the node store, keyed by ``key``).

    ``summary`` holds, per identifier type, the sorted distinct values known in this node's component,
    capped at the type's limit + 1 (see ``IdentityRules.union``): just enough to decide a link locally
    without seeing the component. Every type counts here: a type without a limit is capped by
    ``max_identifiers_per_profile``. A summary is never changed in place (a change is a new one, from
    ``IdentityRules.union``), so states and messages share them without copying. ``version``/``changed_ms``
    make ``IdentityChange`` records monotone per identifier, so a sink can keep the latest one even when
    events arrive late.
    """

    key: str
    first_seen_ms: int
    label: Label
    neighbors: list[str]
    summary: dict[str, list[str]]
    refused: int = 0
    version: int = 0
    changed_ms: int = 0
    proposed: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "first_seen_ms": self.first_seen_ms,
            "label": [self.label[0], self.label[1]],
            "neighbors": list(self.neighbors),
            "summary": self.summary,
            "refused": self.refused,
            "version": self.version,
            "changed_ms": self.changed_ms,
            "proposed": self.proposed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeState:
        return cls(
            key=str(data["key"]),
            first_seen_ms=int(data["first_seen_ms"]),
            label=_label(data["label"]),
            neighbors=[str(n) for n in data.get("neighbors", ())],
            summary=_summary(data.get("summary")),
            refused=int(data.get("refused", 0)),
            version=int(data.get("version", 0)),
            changed_ms=int(data.get("changed_ms", 0)),
            proposed={str(k): int(v) for k, v in (data.get("proposed") or {}).items()},
        )

    def copy(self) -> NodeState:
        return NodeState(
            key=self.key,
            first_seen_ms=self.first_seen_ms,
            label=self.label,
            neighbors=list(self.neighbors),
            summary=self.summary,
            refused=self.refused,
            version=self.version,
            changed_ms=self.changed_ms,
            proposed=dict(self.proposed),
        )

    @classmethod
    def new(cls, key: str, ts_ms: int) -> NodeState:
        return cls(key=key, first_seen_ms=ts_ms, label=(ts_ms, key), neighbors=[], summary=_own_summary(key))


# ------------------------------------------------------------------------------------------ messages


@dataclass(slots=True)
class Observe:
    """An event mentioned identifier ``node`` at ``ts_ms``.

    ``peers`` are the event's other identifier keys. ``primary`` marks the event's strongest identifier:
    only its Observe starts the link handshake and it carries ``event`` (the others carry ``None``), so
    the event is stamped once, with the primary's profile.
    """

    kind: ClassVar[str] = "observe"
    node: str
    ts_ms: int
    peers: list[str]
    cause: str
    event: dict[str, Any] | None = None
    primary: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "node": self.node,
            "ts_ms": self.ts_ms,
            "peers": list(self.peers),
            "cause": self.cause,
            "event": self.event,
            "primary": self.primary,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Observe:
        event = data.get("event")
        return cls(
            node=str(data["node"]),
            ts_ms=int(data["ts_ms"]),
            peers=[str(p) for p in data.get("peers", ())],
            cause=str(data.get("cause", "")),
            event=dict(event) if event is not None else None,
            # Older producers marked the primary only by attaching the event.
            primary=bool(data.get("primary", event is not None)),
        )


@dataclass(slots=True)
class _ComponentNews:
    """``sender`` tells ``node`` the label and summary of its component (the fields Propose and Offer share)."""

    node: str
    sender: str
    label: Label
    summary: dict[str, list[str]]
    cause: str
    ts_ms: int = 0

    def _fields(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "sender": self.sender,
            "label": [self.label[0], self.label[1]],
            "summary": {t: list(v) for t, v in self.summary.items()},
            "cause": self.cause,
            "ts_ms": self.ts_ms,
        }

    @staticmethod
    def _decoded(data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "node": str(data["node"]),
            "sender": str(data["sender"]),
            "label": _label(data["label"]),
            "summary": _summary(data.get("summary")),
            "cause": str(data.get("cause", "")),
            "ts_ms": int(data.get("ts_ms", 0)),
        }


@dataclass(slots=True)
class Propose(_ComponentNews):
    """``sender`` (with its component's label and summary) asks ``node`` for an edge.

    ``then`` is the rest of the event's link chain: after deciding, ``node`` forwards the proposal to
    ``then[0]``. ``ts_ms`` is the event time; it doubles as ``node``'s first_seen if the proposal
    overtakes ``node``'s own Observe (``node`` was in the same event, so that is the right value).
    """

    kind: ClassVar[str] = "propose"
    then: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._fields(), "then": list(self.then)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Propose:
        return cls(**cls._decoded(data), then=[str(t) for t in data.get("then", ())])


@dataclass(slots=True)
class Offer(_ComponentNews):
    """``sender``, already linked to ``node``, tells it the label and summary of its component."""

    kind: ClassVar[str] = "offer"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._fields()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Offer:
        return cls(**cls._decoded(data))


@dataclass(slots=True)
class Erase:
    """A privacy regulation erased the person ``node`` belongs to: the node's state is deleted.

    Sent by the regulation to every identifier of the person's cluster it knows, and by every erased node to every
    node it may have sent anything to (``erase_targets``), so the whole component goes, also the parts the
    regulation did not know yet (links still in flight). Why that is enough: a message ``m`` from X to Y sent before
    X was erased is followed by X's Erase to Y in Y's partition (one producer per partition, in order), so a node
    that ``m`` brings back is erased again. So a worker never handles an Erase it caused at once, as it does other
    messages to its own partitions: it goes through the log, behind whatever of X's waits there. It travels the
    identity-messages topic like the protocol's messages,
    ordered with them, rather than beside them: what a worker does to a node, it does in the node's order.
    """

    kind: ClassVar[str] = "erase"
    node: str
    cause: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "node": self.node, "cause": self.cause}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Erase:
        return cls(node=str(data["node"]), cause=str(data.get("cause", "")))


Message = Observe | Propose | Offer | Erase

_KINDS: dict[str, type[Observe] | type[Propose] | type[Offer] | type[Erase]] = {
    "erase": Erase,
    "observe": Observe,
    "propose": Propose,
    "offer": Offer,
}


def message_from_dict(data: Mapping[str, Any]) -> Message:
    """Decode any protocol message from its ``to_dict()`` form, dispatching on ``kind``."""
    kind = data.get("kind")
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown identity message kind {kind!r}")
    return cls.from_dict(data)


# ---------------------------------------------------------------------------------------------- facts


class _Fact:
    """A fact the protocol records (a row for ClickHouse): its fields, as a dict, are its record."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class IdentityChange(_Fact):
    """Identifier ``id_type:id_value`` now belongs to ``profile_id`` (one row of ``cdp.identities``).

    ``version`` increases by one per change of the same identifier and ``ts_ms`` never goes backwards
    for it, so either can be the ReplacingMergeTree version; event time alone could (late events).
    """

    id_type: str
    id_value: str
    profile_id: str
    ts_ms: int
    version: int = 0


@dataclass(frozen=True)
class Merge(_Fact):
    """Profile ``from_profile`` was absorbed into ``into_profile``.

    Emitted once per dissolved profile, by the node that founded it (whose key names the profile), when
    it leaves its own label, not by every node of the component (that would be a merge storm). Chains
    (a -> b, then b -> c) are possible and must be followed; a later Merge can even point back
    (a late event can make a dissolved profile's founder the oldest node again), so apply them in order.
    """

    from_profile: str
    into_profile: str
    cause: str
    ts_ms: int  # ordered after the profile's previous change, so it can be later than the event
    event_ms: int = 0  # the causing event's own time


@dataclass(frozen=True)
class Refusal(_Fact):
    """A link between ``node`` and ``peer`` was refused (or, for ``race:*``, found over a limit).

    ``reason`` is ``limit:<type>`` / ``limit:max_identifiers`` (the union would exceed a limit),
    ``degree_cap`` (``node`` already has the maximum number of links) or ``race:<type>`` (a concurrent
    link was accepted on stale knowledge; reported, not undone).
    """

    node: str
    peer: str
    reason: str
    cause: str
    ts_ms: int


@dataclass(slots=True)
class Step:
    """Result of handling one message: the node's new state, messages to produce, facts to record."""

    state: NodeState
    out: list[Message] = field(default_factory=list)
    identity_changes: list[IdentityChange] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    stitched_event: dict[str, Any] | None = None
    erased: bool = False  # the node's state is to be deleted (``Erase``), from the store and the changelog


# -------------------------------------------------------------------------------------------- handler


class _Ctx:
    """Accumulates one step's outputs; ``finish`` derives the identity facts from before/after state."""

    def __init__(self, rules: IdentityRules, state: NodeState | None, key: str, ts_ms: int, cause: str) -> None:
        self.rules = rules
        self.created = state is None
        self.state = NodeState.new(key, ts_ms) if state is None else state.copy()
        self.before: Label | None = None if state is None else state.label
        self.ts_ms = ts_ms
        self.cause = cause
        self.out: list[Message] = []
        self.refusals: list[Refusal] = []

    def seen_at(self, ts_ms: int) -> bool:
        """The node was in an event at ``ts_ms``: a late (or imported) event shows the identifier existed
        earlier, and it may now be the oldest node of its component, in which case the component's label (not
        its profile id) moves: True then, and the caller tells the neighbours (once, with the step's final
        label, so no label that lived only inside this step is ever announced)."""
        s = self.state
        if not self.created and ts_ms < s.first_seen_ms:
            s.first_seen_ms = ts_ms
            own: Label = (ts_ms, s.key)
            if own < s.label:
                s.label = own
                return True
        return False

    def propose(self, rules: IdentityRules, to: str, then: list[str]) -> None:
        """Ask ``to`` for an edge (the rest of the event's chain in ``then``), and remember having asked."""
        s = self.state
        self.out.append(Propose(to, s.key, s.label, s.summary, self.cause, self.ts_ms, then))
        self.remember(rules, to)

    def remember(self, rules: IdentityRules, peer: str) -> None:
        """``peer`` was proposed to, or refused here, for an event at ``ts_ms`` (see ``_settled_peer``); bounded
        like the links, since refused peers are kept for good."""
        proposed = self.state.proposed
        if peer in proposed:
            proposed[peer] = min(proposed[peer], self.ts_ms)
        elif len(proposed) < rules.max_identifiers_per_profile:
            proposed[peer] = self.ts_ms

    def offer(self, to: str) -> None:
        s = self.state
        self.out.append(Offer(to, s.key, s.label, s.summary, self.cause, self.ts_ms))

    def broadcast(self, exclude: str | None = None) -> None:
        for neighbor in self.state.neighbors:
            if neighbor != exclude:
                self.offer(neighbor)

    def refuse(self, peer: str, reasons: list[str]) -> None:
        self.state.refused += 1
        reason = ",".join(r if r in ("degree_cap",) else f"limit:{r}" for r in reasons)
        self.refusals.append(Refusal(self.state.key, peer, reason, self.cause, self.ts_ms))

    def absorb(self, rules: IdentityRules, sender: str, label: Label, summary: dict[str, list[str]]) -> bool:
        """Join a linked peer's component knowledge into ours; True if our label or summary changed.

        Where two summaries that each respect the limits meet in one that does not, a concurrent link
        was accepted on stale knowledge: report it (``race:<type>``) at this meeting point only, so one
        race gives a handful of records, not one per node of the component.
        """
        s = self.state
        if summary == s.summary:  # the common echo: nothing new to join, so no race can surface here
            if label < s.label:
                s.label = label
                return True
            return False
        merged = rules.union(s.summary, summary)
        raced = rules.violations(merged)
        if raced and not rules.violations(s.summary) and not rules.violations(summary):
            reason = ",".join(f"race:{r}" for r in raced)
            self.refusals.append(Refusal(s.key, sender, reason, self.cause, self.ts_ms))
        old = (s.label, s.summary)
        s.summary = merged
        s.label = min(s.label, label)
        for peer in [p for p in s.proposed if _in_summary(merged, p)]:
            del s.proposed[peer]  # answered, through whichever member: a member now
        return (s.label, s.summary) != old

    def finish(self, event: dict[str, Any] | None = None) -> Step:
        s = self.state
        changes: list[IdentityChange] = []
        merges: list[Merge] = []
        new_profile = self.rules.profile_id(s.label)
        old_profile = None if self.before is None else self.rules.profile_id(self.before)
        if new_profile != old_profile:
            ts = self.ts_ms if s.version == 0 else max(self.ts_ms, s.changed_ms + 1)
            s.version += 1
            s.changed_ms = ts
            id_type, value = _split(s.key)
            changes.append(IdentityChange(id_type, value, new_profile, ts, s.version))
            if self.before is not None and self.before[1] == s.key:
                merges.append(Merge(old_profile or "", new_profile, self.cause, ts, self.ts_ms))
        stitched = None if event is None else {**event, "profileId": new_profile}
        return Step(s, self.out, changes, merges, self.refusals, stitched)


def _next_in_chain(ctx: _Ctx, chain: list[str], skip: set[str]) -> tuple[str | None, list[str]]:
    """First chain entry not in ``skip`` (already linked / the node itself) and the remaining chain.

    A chain member gets the event's time with its proposal (``Propose`` does what an ``Observe`` would); one
    skipped here because it is linked already gets an ``Observe`` instead."""
    for i, key in enumerate(chain):
        if key not in skip:
            return key, chain[i + 1 :]
        if key != ctx.state.key:
            ctx.out.append(Observe(key, ctx.ts_ms, [], ctx.cause))
    return None, []


_NEVER = 1 << 62  # later than any event time


def _in_summary(summary: Mapping[str, list[str]], key: str) -> bool:
    """Whether the identifier ``key`` is a known member of the component with this summary (values are sorted)."""
    id_type, _, value = key.partition(":")
    values = summary.get(id_type)
    if not values:
        return False
    i = bisect_left(values, value)
    return i < len(values) and values[i] == value


def _settled_peer(state: NodeState, peer: str, ts_ms: int) -> bool:
    """Nothing an event at ``ts_ms`` naming the primary ``state`` and ``peer`` could do for the peer:

    * it is in the component already and an Observe at ``ts_ms`` could not relabel it (equal to the label: the
      peer is the label's node and was first seen at ``ts_ms``), or
    * the primary proposed to it already for an event no later than this one: the answer is on its way, or
      the link was refused, which it would be again (components only grow), and the proposal carried an
      earlier time than this event's."""
    return ((ts_ms, peer) >= state.label and _in_summary(state.summary, peer)) or state.proposed.get(
        peer, _NEVER
    ) <= ts_ms


def settled(state: NodeState | None, peers: Sequence[str], ts_ms: int) -> bool:
    """Whether an event at ``ts_ms`` whose primary has ``state`` and whose other identifiers are ``peers`` can
    change nothing (the fast path, see the module docstring): it is then only stamped with ``state``'s profile."""
    return (
        state is not None and ts_ms >= state.first_seen_ms and all(_settled_peer(state, peer, ts_ms) for peer in peers)
    )


def _fast(state: NodeState | None, msg: Observe, rules: IdentityRules) -> Step | None:
    """The fast path: every peer is a member already and nothing can move, so the full protocol would only stamp
    the event (and add redundant edges inside the component). The step keeps ``state`` itself."""
    if msg.primary and state is not None and settled(state, msg.peers, msg.ts_ms):
        stitched = None if msg.event is None else {**msg.event, "profileId": rules.profile_id(state.label)}
        return Step(state, stitched_event=stitched)
    return None


def _on_observe(state: NodeState | None, msg: Observe, rules: IdentityRules) -> Step:
    fast = _fast(state, msg, rules)
    if fast is not None:
        return fast
    ctx = _Ctx(rules, state, msg.node, msg.ts_ms, msg.cause)
    s = ctx.state
    if ctx.seen_at(msg.ts_ms):
        ctx.broadcast()
    if msg.primary:
        linked = set(s.neighbors)
        chain: list[str] = []
        for peer in dict.fromkeys(msg.peers):
            if peer == s.key or _settled_peer(s, peer, msg.ts_ms):
                continue
            try:
                peer_summary = _own_summary(peer)
            except ValueError:
                continue
            if peer in linked or _in_summary(s.summary, peer):
                # In the component already (an edge would add nothing), but the event may be its oldest.
                ctx.out.append(Observe(peer, msg.ts_ms, [], msg.cause))
                continue
            # Cheap local pre-check: if even the peer's own value breaks a limit of our component,
            # refuse here instead of sending a proposal that is bound to be refused.
            broken = rules.link_violations(s.summary, peer_summary)
            if not broken and len(s.neighbors) >= rules.max_identifiers_per_profile:
                broken = ["degree_cap"]
            if broken:
                ctx.refuse(peer, broken)
                ctx.remember(rules, peer)
                ctx.out.append(Observe(peer, msg.ts_ms, [], msg.cause))  # it exists all the same, on its own
            else:
                chain.append(peer)  # the proposal creates the node or lowers its first_seen
        if chain:
            ctx.propose(rules, chain[0], chain[1:])
            for peer in chain[1:]:
                ctx.remember(rules, peer)  # proposed by the chain's members on this event's behalf
    return ctx.finish(msg.event)


def _on_news(state: NodeState | None, msg: Propose | Offer, rules: IdentityRules) -> Step:
    ctx = _Ctx(rules, state, msg.node, msg.ts_ms, msg.cause)
    if msg.sender == ctx.state.key:  # a node never links to itself
        return ctx.finish()
    if isinstance(msg, Propose):
        return _on_propose(ctx, msg, rules)
    return _on_offer(ctx, msg, rules)


def _on_propose(ctx: _Ctx, msg: Propose, rules: IdentityRules) -> Step:
    s = ctx.state
    sender = msg.sender
    relabeled = ctx.seen_at(msg.ts_ms)  # the node was in the proposing event
    already = sender in s.neighbors
    # Equal labels mean the same component already (labels only travel along accepted links), so the
    # link adds nothing to the profile and needs no limit check.
    if not already and msg.label != s.label:
        broken = rules.link_violations(s.summary, msg.summary)
        if not broken and len(s.neighbors) >= rules.max_identifiers_per_profile:
            broken = ["degree_cap"]
        if broken:
            ctx.refuse(sender, broken)
            if relabeled:
                ctx.broadcast()
            # The rest of the event's chain still gets its chance to link with the original sender.
            nxt, rest = _next_in_chain(ctx, msg.then, {s.key, sender})
            if nxt is not None:
                forward = Propose(nxt, sender, msg.label, msg.summary, msg.cause, msg.ts_ms, rest)
                ctx.out.append(forward)
            return ctx.finish()
    if not already:
        s.neighbors.append(sender)
    changed = ctx.absorb(rules, sender, msg.label, msg.summary) or relabeled
    # Always answer: the sender adds its side of the edge when it hears back, and a duplicate proposal
    # whose first answer was lost gets answered again.
    ctx.offer(sender)
    if changed:
        ctx.broadcast(exclude=sender)
    nxt, rest = _next_in_chain(ctx, msg.then, {s.key, *s.neighbors})
    if nxt is not None:
        ctx.propose(rules, nxt, rest)
    return ctx.finish()


def _on_offer(ctx: _Ctx, msg: Offer, rules: IdentityRules) -> Step:
    # An Offer only reaches existing nodes in normal operation; a missing state (lost table) is
    # rebuilt as well as can be, with the offer's event time as first_seen.
    s = ctx.state
    sender = msg.sender
    if sender not in s.neighbors:
        # The answer to our proposal (or a neighbour we lost): the edge exists on the other side, so it
        # must exist here too, even beyond the degree cap (bounded by proposals in flight).
        s.neighbors.append(sender)
    s.proposed.pop(sender, None)
    if ctx.absorb(rules, sender, msg.label, msg.summary):
        ctx.broadcast(exclude=sender)
    if (s.label, s.summary) != (msg.label, msg.summary):
        # The sender is missing something we know (a smaller label or more values): tell it.
        ctx.offer(sender)
    return ctx.finish()


def handle(state: NodeState | None, msg: Message, rules: IdentityRules) -> Step:
    """Process one message addressed to ``msg.node`` (``state`` is that node's row, ``None`` if new).

    Pure: ``state`` is not modified, the new state is ``Step.state``; when the message changes nothing that
    the fast path can prove (see the module docstring), ``Step.state`` is ``state`` itself, so the caller
    need not write it. The agent stores the state, routes every ``Step.out`` message to its ``node``, and
    records the facts.
    """
    if state is not None and state.key != msg.node:
        raise ValueError(f"state of {state.key!r} given for a message to {msg.node!r}")
    if isinstance(msg, Observe):
        return _on_observe(state, msg, rules)
    if isinstance(msg, Propose | Offer):
        return _on_news(state, msg, rules)
    if isinstance(msg, Erase):
        return _on_erase(state, msg)
    raise TypeError(f"not an identity message: {msg!r}")


def erase_targets(state: NodeState) -> list[str]:
    """Every node ``state``'s node may have sent a message to: its neighbours, the nodes it proposed to or refused,
    and every member its summary names (it tells members of its component that they were in an event)."""
    members = (f"{id_type}:{value}" for id_type, values in state.summary.items() for value in values)
    return sorted({*state.neighbors, *state.proposed, *members} - {state.key})


def _on_erase(state: NodeState | None, msg: Erase) -> Step:
    """The node goes (its ``Step.state`` is only its key's placeholder); an existing one passes the Erase on."""
    if state is None:
        return Step(NodeState.new(msg.node, 0), erased=True)
    return Step(state, [Erase(key, msg.cause) for key in erase_targets(state)], erased=True)


def resync(state: NodeState, cause: str = "resync", ts_ms: int = 0) -> list[Offer]:
    """Offers re-announcing ``state`` to all its neighbours.

    Repairs a state whose output messages were lost (a state restored from somewhere else than the
    changelog, which the agent writes in the same transaction as the messages). Harmless otherwise:
    neighbours that already agree do nothing.
    """
    return [Offer(n, state.key, state.label, state.summary, cause, ts_ms) for n in state.neighbors]


def link_locally(msg: Observe, lookup: Callable[[str], NodeState | None], rules: IdentityRules) -> list[Step] | None:
    """An event's whole effect in one step, for a worker that holds the state of every node it names.

    ``lookup(key)`` is the state of any of the event's identifiers (``msg.node`` and ``msg.peers``), None for a
    node that does not exist yet. Decided here, because the outcome is known without asking anyone:

    * the fast path (see the module docstring);
    * every identifier is new: they form a new component, labelled with their smallest ``(ts_ms, key)``;
    * the primary exists, and each peer is either a settled member of its component or new, joining it without
      breaking a limit and without being older than its label.

    The returned steps (the primary's first) hold the states the protocol's handshakes would reach, minus what
    only brand-new nodes would have said on the way (their own short-lived profiles, and the merges of those):
    new nodes are linked to the primary (a star), get the component's label and summary and one identity change
    each, the primary learns the new members and offers the grown summary to its other neighbours, and the event
    is stamped with the component's profile. Anything else (a link between existing components, a limit, a late
    event) returns None, and the event goes through ``handle`` and the protocol.
    """
    if not msg.primary or msg.event is None:
        return None
    primary = lookup(msg.node)
    fast = _fast(primary, msg, rules)
    if fast is not None:
        return [fast]
    ts = msg.ts_ms
    peers = [p for p in dict.fromkeys(msg.peers) if p != msg.node]
    if primary is None:
        new = peers
    elif ts < primary.first_seen_ms:
        return None
    else:
        new = [p for p in peers if not _settled_peer(primary, p, ts)]
    for p in new:
        if lookup(p) is not None:
            return None  # an existing node outside the primary's component: a link between components
    try:
        added = _summary_of([msg.node, *new] if primary is None else new)
    except ValueError:
        return None
    if primary is None:
        summary = added
        if rules.violations(summary):
            return None
        label = min((ts, key) for key in [msg.node, *new])
        head = NodeState(msg.node, ts, label, list(new), summary)
        offers: list[Message] = []
    else:
        if len(primary.neighbors) + len(new) > rules.max_identifiers_per_profile:
            return None
        label = primary.label
        if min((ts, key) for key in new) <= label:
            return None  # a new identifier would name the component: the protocol relabels it
        summary = rules.union(primary.summary, added)
        if rules.violations(summary):
            return None
        head = primary.copy()
        head.neighbors.extend(new)
        head.summary = summary
        offers = [Offer(n, head.key, label, summary, msg.cause, ts) for n in primary.neighbors]
    profile = rules.profile_id(label)
    steps = [Step(head, offers, stitched_event={**msg.event, "profileId": profile})]
    for key in new if primary is not None else [msg.node, *new]:
        state = head if key == msg.node else NodeState(key, ts, label, [msg.node], summary)
        state.version, state.changed_ms = 1, ts
        change = IdentityChange(*_split(key), profile, ts, 1)
        if key == msg.node:
            steps[0].identity_changes.append(change)
        else:
            steps.append(Step(state, identity_changes=[change]))
    return steps


def event_message(keys: Sequence[str], event: Mapping[str, Any], message_id: str, ts_ms: int) -> Observe | None:
    """The one message an event becomes: its primary's Observe, carrying the event and the other identifiers.

    ``keys`` are the event's identifier keys, strongest first (``extract_identifiers``); an event without any
    usable identifier has no message (and no profile).
    """
    if not keys:
        return None
    return Observe(keys[0], ts_ms, list(keys[1:]), message_id, dict(event), primary=True)
