"""Topic creation through a fake admin client: errors of a cluster that is still starting are retried,
others surface at once with the topic named."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.cimpl import NewTopic

from schemas.settings import Settings
from streams import topics


class _Metadata:
    def __init__(self, names: set[str]) -> None:
        self.topics = dict.fromkeys(names)


class _Admin:
    """Fails each creation with the next error of ``errors`` (None: created)."""

    def __init__(self, errors: list[int | None]) -> None:
        self.errors = errors
        self.created: set[str] = set()
        self.calls = 0

    def list_topics(self, timeout: float) -> _Metadata:
        return _Metadata(self.created)

    def create_topics(self, new: list[NewTopic], operation_timeout: float) -> dict[str, Future[None]]:
        self.calls += 1
        code = self.errors.pop(0) if self.errors else None
        out: dict[str, Future[None]] = {}
        for nt in new:
            fut: Future[None] = Future()
            if code is None:
                self.created.add(nt.topic)
                fut.set_result(None)
            else:
                fut.set_exception(KafkaException(KafkaError(code)))
            out[nt.topic] = fut
        return out


def _wanted() -> list[NewTopic]:
    return [NewTopic("t.a", 1, 1), NewTopic("t.b", 1, 1)]


def test_a_starting_cluster_is_retried_until_the_topics_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streams.topics.time.sleep", lambda s: None)
    admin = _Admin([KafkaError._DESTROY_BROKER, KafkaError.INVALID_REPLICATION_FACTOR, None])
    topics._create(admin, _wanted(), timeout=30)  # type: ignore[arg-type]
    assert admin.created == {"t.a", "t.b"} and admin.calls == 3


def test_a_topic_another_process_created_counts_as_created() -> None:
    admin = _Admin([KafkaError.TOPIC_ALREADY_EXISTS])
    topics._create(admin, _wanted(), timeout=30)  # type: ignore[arg-type]
    assert admin.calls == 1


def test_a_lasting_error_names_the_topic_at_once() -> None:
    admin = _Admin([KafkaError.POLICY_VIOLATION])
    with pytest.raises(RuntimeError, match=r"could not create topic t\.a"):
        topics._create(admin, _wanted(), timeout=30)  # type: ignore[arg-type]
    assert admin.calls == 1


def test_passing_errors_give_up_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streams.topics.time.sleep", lambda s: None)
    admin = _Admin([KafkaError._TRANSPORT] * 1000)
    with pytest.raises(RuntimeError, match="could not create topic"):
        topics._create(admin, _wanted(), timeout=0)  # type: ignore[arg-type]


class _Recording(_Admin):
    def __init__(self) -> None:
        super().__init__([])
        self.topics: dict[str, NewTopic] = {}

    def create_topics(self, new: list[NewTopic], operation_timeout: float) -> dict[str, Future[None]]:
        self.topics.update({nt.topic: nt for nt in new})
        return super().create_topics(new, operation_timeout)


def test_compacted_topics_that_can_hold_a_person_bound_how_long_an_erased_value_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = _Recording()
    monkeypatch.setattr("streams.topics.AdminClient", lambda config: admin)
    settings = Settings(topic_prefix="p", purge_segment_ms=61_000, purge_delete_retention_ms=62_000)
    topics.ensure_topics(settings)
    topics.ensure_topic(settings, "p.cdc.crm.public.customers", compacted=True)
    t = topics.topics_for(settings)
    personal = {t.identity_nodes, t.identities, t.audience_changes, t.privacy_ledger, t.regulations}
    personal.add("p.cdc.crm.public.customers")
    bounded = {name for name, nt in admin.topics.items() if "max.compaction.lag.ms" in nt.config}
    assert bounded == personal
    config = admin.topics[t.identity_nodes].config
    assert config["cleanup.policy"] == "compact" and config["segment.ms"] == "61000"
    assert config["delete.retention.ms"] == "62000" and config["max.compaction.lag.ms"] == "600000"
    assert config["min.cleanable.dirty.ratio"] == "0.1"
