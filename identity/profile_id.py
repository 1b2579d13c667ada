"""How a profile's id is derived from the node key that names it (the oldest identifier of its component).

The first versions derived it as a UUID5 of a fixed, public namespace: anyone holding a guessed e-mail could compute
the profile id of its owner and recognise that person in an export, an audience change or a log that carries only
profile ids. A new install derives it with a secret key of the install instead (``CDP_PROFILE_KEY``, generated once
like the tokens): an HMAC-SHA256 of the node key, shaped as a UUID of version 8 (RFC 9562's custom version, so the
two kinds of id can be told apart at a glance). Without the key the id cannot be recomputed.

An install that already has profile ids keeps the unkeyed derivation for good: the ids are in ClickHouse, in CRMs and
in e-mail tools, and a profile id is its node key's derivation (the protocol never stores it), so changing it would
rename every profile. Which of the two an install uses is decided once and recorded (streams/profile_scheme.py).

Pure and deterministic: every worker of an install, before and after any restart, derives the same id from the same
key, which is what lets the stitch workers agree on profiles without talking about ids.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

__all__ = ["LEGACY_NAMESPACE", "UNKEYED", "ProfileIds"]

# Fixed forever: the profile ids of installs that predate keyed ids depend on it.
LEGACY_NAMESPACE = uuid.UUID("6f0c6c2e-3b7a-5d8e-9a51-2f0f1c3de0a1")

_CACHE_SIZE = 1 << 16  # every stitched event needs its profile's id: a hash and a UUID object each time otherwise
_FINGERPRINT_TEXT = b"cdp profile id key fingerprint"


_NAMESPACE_BYTES = LEGACY_NAMESPACE.bytes


def _uuid_text(digest: bytes, version: int) -> str:
    """A UUID's text from the first 16 bytes of a digest, with ``version`` and the RFC variant set, without building a
    UUID object (a new component's first events, where the cache misses, pay for that more than for the hash)."""
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | (version << 4)
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _unkeyed(node_key: str) -> str:
    """``str(uuid.uuid5(LEGACY_NAMESPACE, node_key))``."""
    return _uuid_text(hashlib.sha1(_NAMESPACE_BYTES + node_key.encode()).digest(), 5)


def _keyed(key: bytes, node_key: str) -> str:
    return _uuid_text(hmac.new(key, node_key.encode(), hashlib.sha256).digest(), 8)


class ProfileIds:
    """``ids(node_key)``: the profile id of a component named by that node key, keyed by ``secret`` (None: the
    unkeyed derivation of installs that predate keys)."""

    def __init__(self, secret: str | None) -> None:
        if secret is not None and not secret:
            raise ValueError("the profile id key is empty (Settings.ensure_tokens generates one)")
        self._key = None if secret is None else secret.encode()
        self._cache: dict[str, str] = {}

    @property
    def keyed(self) -> bool:
        return self._key is not None

    @property
    def scheme(self) -> str:
        return "hmac-sha256" if self.keyed else "uuid5"

    @property
    def fingerprint(self) -> str:
        """Tells keys apart without revealing them: recorded with the install's choice, so that a worker started
        with another key than the install's is refused instead of naming every profile differently."""
        return "" if self._key is None else hmac.new(self._key, _FINGERPRINT_TEXT, hashlib.sha256).hexdigest()[:16]

    def __call__(self, node_key: str) -> str:
        found = self._cache.get(node_key)
        if found is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            key = self._key
            found = _unkeyed(node_key) if key is None else _keyed(key, node_key)
            self._cache[node_key] = found
        return found


UNKEYED = ProfileIds(None)
