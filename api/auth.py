"""Write keys (HTTP Basic user name, or `writeKey` in the body, as Segment SDKs send them) and bearer tokens."""

from __future__ import annotations

import base64
import binascii
import hmac

from fastapi import HTTPException, Request


def basic_user(authorization: str | None) -> str | None:
    """The user name of an HTTP Basic header: Segment SDKs send the write key there with an empty password."""
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


def bearer(authorization: str | None) -> str | None:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    return authorization[7:].strip() or None


def require_token(request: Request, *allowed: str) -> None:
    """401 without a token, 403 with a wrong one; compared in constant time."""
    token = bearer(request.headers.get("authorization"))
    if token is None:
        raise HTTPException(
            401, "missing bearer token (Authorization: Bearer TOKEN)", headers={"WWW-Authenticate": "Bearer"}
        )
    if not any(a and hmac.compare_digest(token, a) for a in allowed):
        raise HTTPException(403, "token not allowed for this endpoint")


def admin(request: Request) -> None:
    s = request.app.state.services.settings
    require_token(request, s.admin_token)


def reader(request: Request) -> None:
    s = request.app.state.services.settings
    require_token(request, s.admin_token, s.read_token)
