"""The serving index's in-memory logic (the Kafka follower is exercised by the e2e audience tests)."""

from streams.serving import MembershipIndex


def test_profile_and_anonymous_audiences_combine() -> None:
    index = MembershipIndex()
    index.apply_identity({"id_type": "email", "id_value": "a@b.c", "profile_id": "p1", "version": 1})
    index.apply_change("p1", "aud-profile", True)
    index.apply_change("email:a@b.c", "aud-direct", True)
    assert index.audiences("email:a@b.c") == ["aud-direct", "aud-profile"]
    assert index.audiences("profile_id:p1") == ["aud-profile"]
    index.apply_change("p1", "aud-profile", False)
    assert index.audiences("email:a@b.c") == ["aud-direct"]
    assert index.audiences("email:unknown@b.c") == []


def test_an_older_identity_version_never_overwrites_a_newer_one() -> None:
    index = MembershipIndex()
    index.apply_identity({"id_type": "user_id", "id_value": "u", "profile_id": "new", "version": 5})
    index.apply_identity({"id_type": "user_id", "id_value": "u", "profile_id": "old", "version": 3})
    assert index.profile_of("user_id:u") == "new"


def test_a_forgotten_identifier_starts_afresh() -> None:
    """A tombstone in the identities topic (an erased person): the identifier is gone, and when the person comes
    back its versions restart without being taken for old ones."""
    index = MembershipIndex()
    index.apply_identity({"id_type": "email", "id_value": "a@b.c", "profile_id": "p1", "version": 7})
    index.forget_identity("email:a@b.c")
    assert index.profile_of("email:a@b.c") is None
    index.apply_identity({"id_type": "email", "id_value": "a@b.c", "profile_id": "p2", "version": 1})
    assert index.profile_of("email:a@b.c") == "p2"
