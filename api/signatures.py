"""Webhook signatures: HMAC-SHA256 over the raw body with the source's secret, as Stripe and Shopify sign.

Why over the raw bytes: a signature covers what the sender sent; parsing and re-encoding the JSON first would
change whitespace and key order and fail honest deliveries (and a body parsed before it is verified is
attacker input in the parser). Comparisons are constant-time.

* ``stripe``: header ``Stripe-Signature: t=UNIX_SECONDS,v1=HEX[,v1=HEX...]``; each v1 is
  HMAC-SHA256(secret, "t.body"); the timestamp must be within the tolerance of now, so a captured delivery
  cannot be replayed later (a sender's honest retry is signed anew).
* ``shopify``: header ``X-Shopify-Hmac-Sha256: BASE64`` of HMAC-SHA256(secret, body). Shopify signs no
  timestamp; a replay is caught by the delivery id (X-Shopify-Webhook-Id), stored once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

STRIPE_HEADER = "stripe-signature"
SHOPIFY_HEADER = "x-shopify-hmac-sha256"


class SignatureError(ValueError):
    """The delivery is not from the holder of the secret: 401, and nothing is stored."""


def _mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def stripe_header(secret: str, body: bytes, timestamp: int) -> str:
    """The header a Stripe endpoint with this secret would send (for tests and for senders of our own)."""
    return f"t={timestamp},v1={_mac(secret, str(timestamp).encode() + b'.' + body).hex()}"


def shopify_header(secret: str, body: bytes) -> str:
    return base64.b64encode(_mac(secret, body)).decode()


def verify_stripe(secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance_s: float) -> None:
    header = _header(headers, STRIPE_HEADER)
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp: int | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            try:
                signatures.append(bytes.fromhex(value))
            except ValueError:
                continue
    if timestamp is None or not signatures:
        raise SignatureError("Stripe-Signature: expected t=TIMESTAMP,v1=SIGNATURE")
    expected = _mac(secret, str(timestamp).encode() + b"." + body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise SignatureError("signature does not match")
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"signature timestamp outside the tolerance of {tolerance_s:.0f} s")


def verify_shopify(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    header = _header(headers, SHOPIFY_HEADER)
    if not header:
        raise SignatureError("missing X-Shopify-Hmac-Sha256 header")
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("X-Shopify-Hmac-Sha256: not base64") from None
    if not hmac.compare_digest(_mac(secret, body), given):
        raise SignatureError("signature does not match")


def verify(scheme: str, secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance_s: float) -> None:
    """Raises SignatureError unless ``body`` was signed with ``secret`` in the given scheme."""
    if not secret:
        raise SignatureError("the source has no secret")
    if scheme == "stripe":
        verify_stripe(secret, headers, body, now, tolerance_s)
    elif scheme == "shopify":
        verify_shopify(secret, headers, body)
    else:
        raise SignatureError(f"unknown signature scheme {scheme!r}")
