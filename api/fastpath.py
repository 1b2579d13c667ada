"""`GET /v1/lookup/{id_type}/{value}` without the framework: the ad-serving hot path.

Real-time bidding gives a lookup about 10 ms end to end; FastAPI's routing, dependency injection and
response models cost more per request than the lookup itself. This ASGI wrapper answers lookups before
the app sees them: bearer-token check (constant time, the roles of the route), the same normalisation as
the stitcher, two dictionary reads in the serving index, orjson. Every other request passes through untouched, and the
route in api/routes/profiles.py documents the same endpoint in the OpenAPI schema.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import orjson

from api.auth import reader, role_of
from api.deps import Services, lookup_key
from api.errors import MISSING_TOKEN, NOT_ALLOWED, UNKNOWN_TOKEN, unknown_id_type
from api.metrics import AUTH_FAILURES, LOOKUP_SECONDS
from schemas.errors import error_body

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
PREFIX = "/v1/lookup/"


class LookupFastPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        index = self.services.index
        parts = scope["path"][len(PREFIX) :].split("/", 1)
        if index is None or len(parts) != 2 or not parts[1]:
            await self.app(scope, receive, send)  # the framework gives the proper 404/503
            return
        started = time.perf_counter()
        token = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                if value[:7].lower() == b"bearer ":
                    token = value[7:].strip()
                break
        if not token:
            AUTH_FAILURES.labels("missing_token").inc()
            await _answer(send, 401, error_body(MISSING_TOKEN, []))
            return
        role = role_of(self.services.settings, token)
        if role is None:
            AUTH_FAILURES.labels("unknown_token").inc()
            await _answer(send, 401, error_body(UNKNOWN_TOKEN, []))
            return
        if role not in reader.roles:
            AUTH_FAILURES.labels("not_allowed").inc()
            await _answer(send, 403, error_body(NOT_ALLOWED, []))
            return
        id_type, value = parts[0], unquote(parts[1])
        key = lookup_key(self.services, id_type, value)
        if key is None:
            refused = unknown_id_type(self.services.id_types)
            await _answer(send, refused.status_code, error_body(refused.message, []))
            return
        await _answer(send, 200, {"audiences": index.audiences(key)})
        LOOKUP_SECONDS.observe(time.perf_counter() - started)


async def _answer(send: Callable[[Any], Awaitable[None]], status: int, body: dict[str, Any]) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
