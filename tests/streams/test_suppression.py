"""A suppressed person's rows are left out of every offline path, as at the collector: `cdp import` and folder
drops (import_file) and database sources (the CDC runner's batch), each counted in cdp_events_suppressed_total;
the row's other identifiers join the suppression (ledger records produced instead), and nothing of the row is
written anywhere else (no rejects file). Pure: a ledger fed by hand and a producer that records."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import orjson
from prometheus_client import REGISTRY

from identity.rules import IdentityRules
from identity.subject_hash import SubjectHasher
from schemas.mappings import mapping_text
from schemas.settings import Settings
from streams.ingest import import_file
from streams.privacy import LedgerEntry, PrivacyLedger, ledger_record
from streams.producer import AsyncProducer
from streams.pull import CdcRunner, RunnerDeps
from streams.source_status import SourceStats
from streams.sources import Source
from streams.topics import Topics

RULES = IdentityRules.load(None)
TOPICS = Topics("t")
Record = tuple[str, bytes | None, bytes | None]


class Recording:
    def __init__(self) -> None:
        self.sent: list[Record] = []

    def send_sync(self, records: Iterable[Record], timeout: float = 30.0, headers: Any = None) -> None:
        self.sent += [(r[0], r[1], r[2]) for r in records]  # the headers are the stitcher's concern


def suppressing(*node_keys: str) -> PrivacyLedger:
    ledger = PrivacyLedger("127.0.0.1:1", TOPICS.privacy_ledger, SubjectHasher("k"))  # never started
    for h in ledger.hasher.many(node_keys):
        ledger.apply(h, ledger_record(ledger.topic, h, LedgerEntry(True, None, "reg_1", "reg_1"))[2])
    return ledger


def suppressed_count(channel: str) -> float:
    return REGISTRY.get_sample_value("cdp_events_suppressed_total", {"channel": channel}) or 0.0


def test_an_import_leaves_out_a_suppressed_person_and_the_identifiers_arriving_with_them(tmp_path: Path) -> None:
    ledger = suppressing("user_id:u1")
    rows = [
        {"type": "identify", "userId": "u1", "traits": {"email": "New@Example.com"}, "messageId": "m1"},
        {"type": "track", "event": "Bought", "traits": {"email": "new@example.com"}, "messageId": "m2"},
        {"type": "track", "event": "Bought", "userId": "u2", "messageId": "m3"},
    ]
    path = tmp_path / "crm.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    producer, before = Recording(), suppressed_count("offline")
    source = Source("wk", "crm", "offline", 0)
    rejects = tmp_path / "crm.rejects.jsonl"
    result = import_file(
        path, source, TOPICS.raw("offline"), cast(AsyncProducer, producer), rejects, RULES, ledger=ledger
    )
    assert (result.accepted, result.rejected, result.suppressed) == (1, 0, 2)
    assert [orjson.loads(v or b"")["messageId"] for t, _, v in producer.sent if t == TOPICS.raw("offline")] == ["m3"]
    joined = [k for t, k, _ in producer.sent if t == TOPICS.privacy_ledger]
    assert joined == [ledger.hasher("email:new@example.com").encode()]
    assert b"u1" not in b"".join(v or b"" for _, _, v in producer.sent) and not rejects.exists()
    assert suppressed_count("offline") - before == 2


class Message:
    def __init__(self, key: Any, value: Any) -> None:
        self._key, self._value = orjson.dumps(key), orjson.dumps(value)

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value


def contact(row_id: int, email: str) -> Message:
    row = {"id": row_id, "email": email, "first_name": "A", "updated_at": 1_714_557_600_000}
    src = {"ts_ms": 1_714_557_605_000, "lsn": 1000 + row_id, "snapshot": "false"}
    return Message({"id": row_id}, {"op": "c", "before": None, "after": row, "source": src, "ts_ms": 1})


def test_a_database_source_leaves_out_a_suppressed_persons_row_changes() -> None:
    config = {"mapping_yaml": mapping_text("contacts"), "table": "crm.contacts", "topic": "cdc", "connector": "c"}
    source = Source("wk_pg", "crm", "offline", 0, kind="postgres", config=config)
    ledger = suppressing("email:ann@example.com")
    deps = RunnerDeps(SourceStats("test"), Settings(), TOPICS, RULES, ledger)
    producer, before = Recording(), suppressed_count("offline")
    CdcRunner(source, deps)._forward([contact(7, "Ann@Example.com"), contact(8, "bob@example.com")], producer)
    raw = [orjson.loads(v or b"") for t, _, v in producer.sent if t == TOPICS.raw("offline")]
    assert [e["traits"]["email"] for e in raw] == ["bob@example.com"]
    assert [k for t, k, _ in producer.sent if t == TOPICS.privacy_ledger] == [ledger.hasher("crm_id:7").encode()]
    assert suppressed_count("offline") - before == 1
