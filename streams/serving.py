"""The serving index behind `GET /v1/lookup`: identifier -> profile, member -> audiences, in memory.

Kept current by the stream, not by ClickHouse scans: it follows `cdp.identities` (latest profile per
identifier) and `cdp.audience.changes` (entered/exited per audience and member). Both topics are compacted,
so a restarted process rebuilds the index from current state. A lookup is two dictionary reads.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import orjson
from confluent_kafka import Message

from streams.follow import TopicFollower


class MembershipIndex:
    """The in-memory part: pure, so it is tested without a broker.

    Kept small, since it holds every identifier: a member's audiences are a tuple shared by every member with
    the same audiences (a set per member costs several times more), replaced on change; a version is kept only
    when it is not the first (0)."""

    def __init__(self) -> None:
        self._profile_of: dict[str, str] = {}
        self._version_of: dict[str, int] = {}
        self._audiences_of: dict[str, tuple[str, ...]] = {}
        self._combinations: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def apply_identity(self, v: dict[str, Any]) -> None:
        """An identities record: the identifier now belongs to `profile_id` (older versions never win)."""
        key = f"{v['id_type']}:{v['id_value']}"
        version = int(v.get("version", 0))
        with self._lock:
            if version >= self._version_of.get(key, -1):
                self._profile_of[key] = v["profile_id"]
                if version:
                    self._version_of[key] = version
                else:  # the first version of most identifiers: absent means 0
                    self._version_of.pop(key, None)

    def forget_identity(self, key: str) -> None:
        """A tombstone in the identities topic (an erased identifier): gone, version and all, so the identifier
        of a person who comes back starts afresh."""
        with self._lock:
            self._profile_of.pop(key, None)
            self._version_of.pop(key, None)

    def apply_change(self, member: str, audience_id: str, entered: bool) -> None:
        with self._lock:
            current = self._audiences_of.get(member, ())
            if entered == (audience_id in current):
                return
            if entered:
                changed = tuple(sorted((*current, sys.intern(audience_id))))
            else:
                changed = tuple(a for a in current if a != audience_id)
            if changed:
                self._audiences_of[member] = self._combinations.setdefault(changed, changed)
            else:
                del self._audiences_of[member]

    def profile_of(self, key: str) -> str | None:
        return self._profile_of.get(key)

    def audiences(self, key: str) -> list[str]:
        """Audiences of an identifier key ("email:a@b.c", "anonymous_id:x", "profile_id:p"): its own
        (anonymous scope) and those of the profile it belongs to (profile scope)."""
        profile: str | None
        if key.startswith("profile_id:"):
            own: tuple[str, ...] = ()
            profile = key[len("profile_id:") :]
        else:
            own = self._audiences_of.get(key, ())
            profile = self._profile_of.get(key)
        of_profile = self._audiences_of.get(profile, ()) if profile else ()
        if not own:
            return list(of_profile)
        if not of_profile:
            return list(own)
        return sorted({*own, *of_profile})

    @property
    def sizes(self) -> tuple[int, int]:
        return len(self._profile_of), len(self._audiences_of)


class ServingIndex(MembershipIndex):
    """The index, kept current by following the identities and audience-change topics."""

    def __init__(self, bootstrap: str, identities_topic: str, changes_topic: str) -> None:
        super().__init__()
        self._follower = TopicFollower(
            bootstrap, {identities_topic: self._on_identity, changes_topic: self._on_change}, name="serving"
        )

    def _on_identity(self, msg: Message) -> None:
        if (value := msg.value()) is not None:
            self.apply_identity(orjson.loads(value))
        elif key := msg.key():
            self.forget_identity(key.decode())

    def _on_change(self, msg: Message) -> None:
        if (value := msg.value()) is not None:
            v = orjson.loads(value)
            self.apply_change(v["member"], v["audience_id"], v["status"] == "entered")
        elif key := msg.key():  # an erased member's membership: `audience_id|member`
            audience_id, _, member = key.decode().partition("|")
            self.apply_change(member, audience_id, False)

    def start(self, wait: float = 120.0) -> ServingIndex:
        self._follower.start(wait)
        return self

    def stop(self) -> None:
        self._follower.stop()
