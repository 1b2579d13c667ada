"""The privacy ledger and the regulations' log: two compacted topics, followed into memory.

The ledger (``cdp.privacy.ledger``) is keyed by the keyed hash of an identifier's node key (identity/subject_hash.py)
and says what holds for that identifier: suppressed (the collector drops its events), erased before a time (what
was received before it is gone). It holds no value of the identifier, so it can be kept for good and read by every
collector. A key whose entry says neither is a tombstone, which compaction removes.

The log (``cdp.privacy.regulations``) holds each regulation's state: type, subjects' hashes, who asked, the
status and times of each stage, counts per store and the residual count. GET /v1/regulations/{id} reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from identity.extract import identifier_keys
from identity.rules import IdentityRules
from identity.subject_hash import SubjectHasher
from streams.follow import CompactedTopic
from streams.metrics import EVENTS_SUPPRESSED
from streams.producer import Record as ProducerRecord

__all__ = ["LedgerEntry", "PrivacyLedger", "RegulationLog", "ledger_record", "screened"]

Record = tuple[str, bytes, bytes | None]
Produced = ProducerRecord  # any record a producer sends (streams/producer.py)


@dataclass(frozen=True)
class LedgerEntry:
    """``group`` is the regulation that suppressed the identifier: identifiers that arrive later together with a
    suppressed one join its group, and an ``unsuppress`` of any of them lifts the whole group."""

    suppressed: bool = False
    erased_at_ms: int | None = None
    group: str = ""
    regulation: str = ""

    @property
    def empty(self) -> bool:
        return not self.suppressed and self.erased_at_ms is None


def _decode(value: bytes) -> LedgerEntry:
    return LedgerEntry(**orjson.loads(value))


def _erasure_mark(entry: LedgerEntry | None) -> int:
    return int(entry is not None and entry.erased_at_ms is not None)


def ledger_record(topic: str, subject_hash: str, entry: LedgerEntry) -> Record:
    """The ledger record of one identifier; an entry that says nothing is a tombstone."""
    return topic, subject_hash.encode(), None if entry.empty else orjson.dumps(asdict(entry))


class PrivacyLedger(CompactedTopic[LedgerEntry]):
    """The ledger, followed into memory, with the set of suppressed hashes kept beside it: the collector asks it
    for every event, and while nothing is suppressed the answer costs no hashing at all."""

    def __init__(self, bootstrap: str, topic: str, hasher: SubjectHasher) -> None:
        super().__init__(bootstrap, topic, _decode, name="privacy-ledger")
        self.hasher = hasher
        self._suppressed: set[str] = set()
        self._erased = 0  # entries with an erasure time: while there is none, replays cost no hashing either
        self._suppressed_lock = threading.Lock()

    def apply(self, key: str, value: bytes | None) -> None:
        """Called by the follower thread, the collector and the regulations' processor: one at a time, so the
        suppressed set never disagrees with the entries."""
        with self._suppressed_lock:
            before = self.get(key)
            super().apply(key, value)
            entry = self.get(key)
            self._erased += _erasure_mark(entry) - _erasure_mark(before)
            if entry is not None and entry.suppressed:
                self._suppressed.add(key)
            else:
                self._suppressed.discard(key)

    @property
    def suppressing_any(self) -> bool:
        return bool(self._suppressed)

    def suppressing(self, node_keys: Sequence[str]) -> LedgerEntry | None:
        """The entry that suppresses one of an event's identifiers, if any does."""
        if not self._suppressed or not node_keys:
            return None
        for h in self.hasher.many(node_keys):
            if h in self._suppressed:
                return self.get(h)
        return None

    @property
    def erasing_any(self) -> bool:
        return self._erased > 0

    def erased_before(self, node_keys: Sequence[str], received_at_ms: int | None) -> bool:
        """Whether one of an event's identifiers was erased after the event was received, by the server's clock
        (``receivedAt``, never the client's timestamp): a replay of the raw topics must not bring that data back.
        An event without ``receivedAt`` (not from the collector or the importer) counts as received long ago."""
        if not self._erased or not node_keys:
            return False
        received = received_at_ms if received_at_ms is not None else 0
        for h in self.hasher.many(node_keys):
            entry = self.get(h)
            if entry is not None and entry.erased_at_ms is not None and received <= entry.erased_at_ms:
                return True
        return False

    def screen(self, node_keys: Sequence[str]) -> list[Record] | None:
        """For an incoming event's identifiers: None to let it in; else it is dropped, and the ledger records of
        its identifiers that join the suppression (applied here at once, so the next event of the same request
        already meets them) are what the caller produces with its other records."""
        by = self.suppressing(node_keys)
        if by is None:
            return None
        records = []
        for h, entry in self.joining(node_keys, by):
            record = ledger_record(self.topic, h, entry)
            self.apply(h, record[2])
            records.append(record)
        return records

    def joining(self, node_keys: Sequence[str], by: LedgerEntry) -> list[tuple[str, LedgerEntry]]:
        """Entries for the identifiers of a suppressed event that are not suppressed yet: they arrived with a
        suppressed one, so they are the same person (a new cookie logging in) and join its group."""
        out = []
        for h in self.hasher.many(node_keys):
            if h in self._suppressed:
                continue
            current = self.get(h) or LedgerEntry()
            out.append((h, replace(current, suppressed=True, group=by.group, regulation=by.regulation)))
        return out

    def in_groups(self, groups: Iterable[str]) -> list[tuple[str, LedgerEntry]]:
        """Every suppressed identifier of these groups (what an ``unsuppress`` lifts)."""
        wanted = set(groups)
        with self._suppressed_lock:
            suppressed = list(self._suppressed)
        found = ((h, self.get(h)) for h in suppressed)
        return [(h, e) for h, e in found if e is not None and e.group in wanted]


def screened(ledger: PrivacyLedger, event: dict[str, Any], rules: IdentityRules, channel: str) -> list[Produced] | None:
    """None for an event to keep; for one of a suppressed person, counted as dropped, the ledger records its other
    identifiers need (``PrivacyLedger.screen``), which the caller produces instead of the event. Shared by every
    path that takes events: the collector's routes, the webhooks, `cdp import`, folder and database sources."""
    records = ledger.screen(identifier_keys(event, rules))
    if records is not None:
        EVENTS_SUPPRESSED.labels(channel).inc()
    return list(records) if records is not None else None


class RegulationLog(CompactedTopic[dict[str, Any]]):
    """The regulations' states, followed into memory (regulation id -> state)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic, orjson.loads, name="regulations")

    def record(self, state: dict[str, Any]) -> Record:
        return self.topic, str(state["id"]).encode(), orjson.dumps(state)
