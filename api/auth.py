"""Write keys (HTTP Basic user name, `writeKey` in the body as Segment SDKs send them, or `?writeKey=` for
sendBeacon) and bearer tokens, as dependencies: a route names who may call it (`dependencies=[Depends(admin)]`;
the collector's intake).

Three tokens, three roles: the admin token may do everything; the analyst token runs SQL and reads profiles
and audiences; the read token serves lookups and profiles. A token that is none of them is 401 (as no
token); a known token without the right for the endpoint is 403.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from enum import StrEnum
from typing import Any

from fastapi import Request
from fastapi.openapi.models import HTTPBearer
from fastapi.security.base import SecurityBase

from api.deps import SettingsDep
from api.errors import (
    MISSING_TOKEN,
    MISSING_WRITE_KEY,
    NOT_ALLOWED,
    PULL_SOURCE_WRITE_KEY,
    UNKNOWN_TOKEN,
    UNKNOWN_WRITE_KEY,
    ApiError,
)
from api.metrics import AUTH_FAILURES
from schemas.settings import Settings
from streams.sources import Source, SourceRegistry


class Role(StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    READ = "read"


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


def role_of(settings: Settings, token: bytes | str) -> Role | None:
    """The role ``token`` carries, compared in constant time against every configured token."""
    given = token.encode() if isinstance(token, str) else token
    found = None
    for role, configured in (
        (Role.ADMIN, settings.admin_token),
        (Role.ANALYST, settings.analyst_token),
        (Role.READ, settings.read_token),
    ):
        if configured and hmac.compare_digest(given, configured.encode()) and found is None:
            found = role
    return found


class Requires(SecurityBase):
    """A route dependency: the bearer token must carry one of ``roles``. The roles stay readable on the
    object, so the route table can be checked for who may call what. A security scheme to FastAPI, so the
    OpenAPI document (/docs) asks for the token on exactly these routes."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)
        self.model = HTTPBearer(description="The admin, analyst or read token (`Authorization: Bearer TOKEN`).")
        self.scheme_name = "token"

    async def __call__(self, request: Request, settings: SettingsDep) -> Role:
        token = bearer(request.headers.get("authorization"))
        if token is None:
            AUTH_FAILURES.labels("missing_token").inc()
            raise ApiError(401, MISSING_TOKEN, headers={"WWW-Authenticate": "Bearer"})
        role = role_of(settings, token)
        if role is None:
            AUTH_FAILURES.labels("unknown_token").inc()
            raise ApiError(401, UNKNOWN_TOKEN, headers={"WWW-Authenticate": "Bearer"})
        if role not in self.roles:
            AUTH_FAILURES.labels("not_allowed").inc()
            raise ApiError(403, f"{NOT_ALLOWED} (the {role} token; needs {' or '.join(sorted(self.roles))})")
        return role


admin = Requires(Role.ADMIN)
analyst = Requires(Role.ADMIN, Role.ANALYST)
reader = Requires(Role.ADMIN, Role.ANALYST, Role.READ)


def write_key_source(request: Request, payload: dict[str, Any], sources: SourceRegistry) -> Source:
    """The source whose write key the request carries; 401 without one or with one nobody issued. Called by the
    collector's intake dependency (api/routes/collect.py), once the body is read."""
    # The query parameter is for navigator.sendBeacon, which cannot set an Authorization header.
    key = (
        basic_user(request.headers.get("authorization"))
        or payload.get("writeKey")
        or request.query_params.get("writeKey")
    )
    if not isinstance(key, str) or not key:
        AUTH_FAILURES.labels("missing_write_key").inc()
        raise ApiError(401, MISSING_WRITE_KEY)
    source = sources.get(key)
    if source is None:
        AUTH_FAILURES.labels("unknown_write_key").inc()
        raise ApiError(401, UNKNOWN_WRITE_KEY)
    # e.g. a webhook source's key, printed and not secret, must not bypass its signature
    if source.kind != "sdk":
        AUTH_FAILURES.labels("pull_source_write_key").inc()
        raise ApiError(401, PULL_SOURCE_WRITE_KEY)
    return source
