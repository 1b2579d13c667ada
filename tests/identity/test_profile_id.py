"""Profile ids: keyed for new installs (nobody can compute them from a guessed identifier), unkeyed for old ones."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from identity.profile_id import LEGACY_NAMESPACE, UNKEYED, ProfileIds
from identity.rules import IdentityRules
from identity.simulate import GraphSimulator
from tests.identity._support import keyed, make_event


def test_a_keyed_id_cannot_be_computed_without_the_key_and_is_stable_with_it() -> None:
    key = "email:ann@example.com"
    ids = ProfileIds("secret-of-the-install")
    guessed = str(uuid.uuid5(LEGACY_NAMESPACE, key))  # what anyone could compute before keyed ids
    assert ids(key) != guessed
    assert ids(key) != ProfileIds("another-install")(key)
    assert ids(key) == ProfileIds("secret-of-the-install")(key)  # another worker, or after a restart
    assert uuid.UUID(ids(key)).version == 8 and uuid.UUID(guessed).version == 5


@given(st.text(max_size=60))
def test_the_unkeyed_derivation_is_the_uuid5_existing_stores_hold(key: str) -> None:
    """Profile ids of installs from before keys depend on it: it must stay ``uuid5(LEGACY_NAMESPACE, key)``."""
    assert UNKEYED(key) == str(uuid.uuid5(uuid.UUID("6f0c6c2e-3b7a-5d8e-9a51-2f0f1c3de0a1"), key))
    assert uuid.UUID(ProfileIds("k")(key)).version == 8


def test_the_unkeyed_derivation_tells_no_key() -> None:
    assert not UNKEYED.keyed and UNKEYED.fingerprint == ""
    assert ProfileIds("k").fingerprint != ProfileIds("l").fingerprint


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError):
        ProfileIds("")


def test_the_protocol_names_profiles_with_the_rules_key() -> None:
    """The stitcher sets the install's derivation on its rules; every fact and stamped event carries it."""
    rules = keyed(IdentityRules.load(None))
    sim = GraphSimulator(rules, partitions=2, seed=1)
    sim.submit(make_event({"anonymous_id": "a1", "email": "ann@x.io"}, messageId="m1"), ts_ms=5)
    sim.run()
    profile = rules.profile_ids("anonymous_id:a1")
    assert {c.profile_id for c in sim.identity_changes} == {profile}
    assert [e["profileId"] for e in sim.stitched_events] == [profile]
    assert profile != UNKEYED("anonymous_id:a1")
