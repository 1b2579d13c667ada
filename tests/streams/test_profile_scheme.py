"""The install's profile-id derivation: decided once, recorded in Kafka, the same for every worker."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from identity.profile_id import UNKEYED, ProfileIds
from schemas.settings import Settings
from streams.profile_scheme import ProfileKeyMismatch, decide, install_profile_ids
from streams.topics import ensure_topic, topics_for


def test_a_new_install_is_keyed_and_records_the_key_fingerprint() -> None:
    ids, record = decide(None, existing_store=False, key="k1")
    assert ids.keyed and record == {"scheme": "hmac-sha256", "key_id": ProfileIds("k1").fingerprint}
    again, _ = decide(record, existing_store=True, key="k1")  # a restart, or another worker: the same ids
    assert again("email:a@x.io") == ids("email:a@x.io")


def test_an_existing_store_keeps_unkeyed_ids_for_good() -> None:
    ids, record = decide(None, existing_store=True, key="k1")
    assert ids is UNKEYED and record == {"scheme": "uuid5"}
    assert decide(record, existing_store=False, key="k2")[0] is UNKEYED  # the identity state wiped later


def test_a_worker_with_another_key_is_refused() -> None:
    _, record = decide(None, existing_store=False, key="k1")
    with pytest.raises(ProfileKeyMismatch):
        decide(record, existing_store=False, key="k2")


@pytest.mark.e2e
def test_the_choice_is_recorded_in_kafka_and_read_by_every_worker(kafka, topic_prefix: str, tmp_path) -> None:
    """A second worker (here: the second call) reads the recorded choice; the pure rules for it are tested above."""
    new = Settings(kafka_bootstrap=kafka.bootstrap, topic_prefix=topic_prefix, profile_key="k1", data_dir=tmp_path)
    ensure_topic(new, topics_for(new).install, compacted=True)  # the identity topics do not exist yet: a new install
    first = install_profile_ids(new, topics_for(new))
    assert first.keyed and first("email:a@x.io") == ProfileIds("k1")("email:a@x.io")
    with pytest.raises(ProfileKeyMismatch):
        install_profile_ids(new.model_copy(update={"profile_key": "k2"}), topics_for(new))

    # An install whose identity state predates keyed ids: detected from its changelog, kept unkeyed.
    old = new.model_copy(update={"topic_prefix": f"{topic_prefix}-old"})
    for name in (topics_for(old).install, topics_for(old).identity_nodes):
        ensure_topic(old, name, compacted=True)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topics_for(old).identity_nodes, key=b'"email:a@x.io"', value=b"{}", partition=0)
    assert producer.flush(10) == 0
    assert install_profile_ids(old, topics_for(old)) is UNKEYED
