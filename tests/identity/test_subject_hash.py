"""The keyed hash of the privacy ledger: stable for one secret, different under another, never the value."""

from __future__ import annotations

import hashlib

import pytest

from identity.subject_hash import SubjectHasher


def test_the_same_key_hashes_the_same_and_another_secret_differently() -> None:
    a, b = SubjectHasher("secret-one"), SubjectHasher("secret-two")
    assert a("email:ann@example.com") == a("email:ann@example.com")
    assert a("email:ann@example.com") != b("email:ann@example.com")
    assert a("email:ann@example.com") != a("email:bob@example.com")


def test_the_hash_is_not_the_plain_digest_anyone_could_recompute() -> None:
    key = "email:ann@example.com"
    digest = SubjectHasher("s")(key)
    assert digest != hashlib.sha256(key.encode()).hexdigest()
    assert "ann" not in digest and len(digest) == 64


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="privacy key"):
        SubjectHasher("")
