"""The install's profile-id derivation (identity/profile_id.py), decided once and recorded where every worker reads it.

A new install names its profiles with its secret key (``CDP_PROFILE_KEY``); an install that already has profiles
keeps the unkeyed derivation, or every profile would be renamed. "Already has profiles" is read from Kafka, the
identity state every worker shares: the node changelog or the identities topic has ever held a record. The choice
is recorded in a compacted topic of its own (``Topics.install``), which outlives the identity state: a wiped graph
replayed from the raw topics gets the ids it had. With the choice goes a fingerprint of the key (never the key), so a
worker started with another key than the install's stops at once instead of naming every profile differently.

Two workers of a brand-new install starting together both record the same choice (the decision depends only on the
shared state and the key). Only if they also hold different keys can both records be written; each then refuses at
its next start, by whichever record compaction kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from confluent_kafka import Consumer

from identity.profile_id import UNKEYED, ProfileIds
from schemas.settings import Settings
from streams.follow import CompactedTopic, high_watermark
from streams.producer import AsyncProducer
from streams.topics import Topics

__all__ = ["RECORD_KEY", "ProfileKeyMismatch", "decide", "install_profile_ids"]

log = logging.getLogger(__name__)

RECORD_KEY = "profile_ids"
KEYED, UNKEYED_SCHEME = "hmac-sha256", "uuid5"


class ProfileKeyMismatch(RuntimeError):
    """The worker's profile id key is not the one the install's profile ids are derived with."""


def decide(recorded: Mapping[str, Any] | None, existing_store: bool, key: str) -> tuple[ProfileIds, dict[str, str]]:
    """The derivation to use and the record that says so (to write when ``recorded`` is None), from what is recorded,
    whether the install already has identity state, and this worker's key. Pure."""
    if recorded is None and existing_store:
        return UNKEYED, {"scheme": UNKEYED_SCHEME}
    scheme = KEYED if recorded is None else recorded.get("scheme")
    if scheme == UNKEYED_SCHEME:
        return UNKEYED, dict(recorded or {})
    if scheme != KEYED:
        raise ProfileKeyMismatch(f"unknown profile id scheme {scheme!r} recorded for this install")
    keyed = ProfileIds(key)
    if recorded is None:
        return keyed, {"scheme": KEYED, "key_id": keyed.fingerprint}
    if recorded.get("key_id") != keyed.fingerprint:
        raise ProfileKeyMismatch(
            "CDP_PROFILE_KEY is not the key this install's profile ids are derived with: give every worker the "
            "install's key (the profile_key file in the first process's data folder)"
        )
    return keyed, dict(recorded)


def _has_identity_state(bootstrap: str, topics: Topics, timeout: float = 30.0) -> bool:
    """Whether the node changelog or the identities topic ever held a record (an end offset above 0: compaction and
    tombstones never lower it)."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "cdp-install-probe", "enable.auto.commit": False})
    try:
        meta = probe.list_topics(timeout=timeout).topics
        for name in (topics.identity_nodes, topics.identities):
            for partition in sorted(meta[name].partitions) if name in meta else ():
                if high_watermark(probe, name, partition, timeout) > 0:
                    return True
        return False
    finally:
        probe.close()


def install_profile_ids(settings: Settings, topics: Topics) -> ProfileIds:
    """The install's derivation, recording the choice on first use (blocking; topics exist already)."""
    record = CompactedTopic(settings.kafka_bootstrap, topics.install, orjson.loads, name="install").start()
    try:
        recorded = record.get(RECORD_KEY)
    finally:
        record.stop()
    existing = recorded is None and _has_identity_state(settings.kafka_bootstrap, topics)
    ids, choice = decide(recorded, existing, settings.profile_key)
    if recorded is None:
        producer = AsyncProducer(settings.kafka_bootstrap)
        try:
            producer.send_sync([(topics.install, RECORD_KEY.encode(), orjson.dumps(choice))])
        finally:
            producer.close()
        log.info("profile ids of this install: %s (recorded)", choice["scheme"])
    return ids
