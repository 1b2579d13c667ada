"""An app over fake parts, for route tests that need no broker: the routes, dependencies and error handlers are
the real ones; the producer records instead of sending, and the followers are fed by hand."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import Services
from identity.rules import IdentityRules
from identity.subject_hash import SubjectHasher
from schemas.settings import Settings
from sinks.clickhouse import ClickHouse
from sinks.regulations import RegulationProcessor
from streams.audiences import AudienceDefinitions
from streams.follow import CompactedTopic
from streams.node_erasure import NodeEraser
from streams.privacy import PrivacyLedger, RegulationLog
from streams.producer import AsyncProducer, Headers
from streams.serving import MembershipIndex
from streams.sources import SourceRegistry
from streams.topics import Topics

Record = tuple[str, bytes | None, bytes | None]  # (topic, key, value); value None: a tombstone

ADMIN = {"Authorization": "Bearer adm1n"}
READ = {"Authorization": "Bearer r3ad"}
WRITE_KEY = "wk_test"
PRIVACY_KEY = "pr1vacy"
NEVER_STARTED = "127.0.0.1:1"  # followers built but not started hold no Kafka client


class RecordingProducer:
    """Acknowledges every record at once and keeps it; feeds records for a followed topic back, as Kafka would."""

    def __init__(self, follows: dict[str, CompactedTopic[Any]] | None = None) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.headers: list[Headers | None] = []
        self.follows = follows or {}

    async def send_many(self, records: Iterable[Record], timeout: float, headers: Headers | None = None) -> None:
        self.send_sync(records, timeout, headers)

    def send_sync(self, records: Iterable[Record], timeout: float = 30.0, headers: Headers | None = None) -> None:
        for record in records:
            topic, key, value = record[0], record[1], record[2]
            self.sent.append((topic, key, value))
            self.headers.append(record[3] if len(record) == 4 else headers)
            if topic in self.follows and key is not None:
                self.follows[topic].apply(key.decode(), value)


def services(max_request_bytes: int = 512_000, ch: ClickHouse | None = None) -> Services:
    """With ``ch``, also the regulations' processor on it (built, not started: a test that runs regulations
    starts and stops it)."""
    settings = Settings(admin_token="adm1n", read_token="r3ad", max_request_bytes=max_request_bytes)
    topics = Topics("t")
    sources = SourceRegistry(NEVER_STARTED, topics.sources)
    sources.apply(WRITE_KEY, b'{"write_key": "wk_test", "name": "web", "channel": "online", "created_at_ms": 1}')
    audiences = AudienceDefinitions(NEVER_STARTED, topics.audiences)
    ledger = PrivacyLedger(NEVER_STARTED, topics.privacy_ledger, SubjectHasher(PRIVACY_KEY))
    log = RegulationLog(NEVER_STARTED, topics.regulations)
    follows: dict[str, CompactedTopic[Any]] = {
        topics.audiences: audiences,
        topics.sources: sources,
        topics.privacy_ledger: ledger,
        topics.regulations: log,
    }
    producer = cast(AsyncProducer, RecordingProducer(follows))
    return Services(
        settings,
        topics,
        producer=producer,
        sources=sources,
        ch=ch,
        audiences=audiences,
        index=MembershipIndex(),
        id_types=frozenset({"profile_id", "email", "anonymous_id", "user_id"}),
        rules=IdentityRules.load(None),
        ledger=ledger,
        regulation_log=log,
        regulations=RegulationProcessor(ch, producer, ledger, log, topics, RecordingEraser())
        if ch is not None
        else None,
    )


class RecordingEraser(NodeEraser):
    """The stitch workers' side of an erasure without workers: the nodes it was asked to erase, all done at once."""

    def __init__(self) -> None:
        super().__init__(NEVER_STARTED, Topics("unused"), 1)
        self.erased: list[str] = []

    def erase(self, producer: AsyncProducer, node_keys: Sequence[str], cause: str) -> int:
        self.erased.extend(node_keys)
        return len(node_keys)


def client(s: Services) -> TestClient:
    return TestClient(create_app(s), raise_server_exceptions=False)


def sent(s: Services) -> list[tuple[str, bytes | None, bytes | None]]:
    return cast(RecordingProducer, s.producer).sent


def sent_headers(s: Services) -> list[Headers | None]:
    return cast(RecordingProducer, s.producer).headers


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The documented error body, whatever route answered."""
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert set(body) == {"success", "error", "errors"}, body
    assert body["success"] is False and isinstance(body["error"], str) and body["error"]
    return body
