"""The keyed hash that names a person in the privacy ledger and in the regulations' audit trail.

A plain SHA-256 of an e-mail is still personal data: anyone can hash a guessed address and compare. An HMAC
with a secret of the deployment (``CDP_PRIVACY_KEY``, generated once like the tokens) can only be recomputed
by who holds the secret, and the ledger keeps nothing else about the person. The hashed text is the
identifier's node key as the stitcher writes it (``email:ann@example.com``, normalised by the identity rules),
so a subject given in any spelling and the identifiers of an incoming event meet on the same hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["SubjectHasher"]


class SubjectHasher:
    """``hasher(key)``: the hex HMAC-SHA256 of a node key under the deployment's secret."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the privacy key is empty (Settings.ensure_tokens generates one)")
        self._key = secret.encode()

    def __call__(self, node_key: str) -> str:
        return hmac.new(self._key, node_key.encode(), hashlib.sha256).hexdigest()

    def many(self, node_keys: Iterable[str]) -> list[str]:
        return [self(k) for k in node_keys]
