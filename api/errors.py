"""Every error answer of the HTTP API, built in one place.

Routes and dependencies raise; the handlers installed here turn what they raise into the documented body
(schemas/errors.py): ``{"success": false, "error": "<summary>", "errors": [{"loc": "...", "msg": "..."}]}``.
A bad request is a 4xx naming the field, an unavailable dependency a 503 with Retry-After where a retry helps;
no client input reaches a 500. The fixed messages are constants here, so the fast path and the routes say the
same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.body import BodyError
from schemas.audience import RuleError
from schemas.errors import EventError, FieldError, error_body, format_loc, from_validation_error
from schemas.segment import EventTooLarge
from streams.producer import ProduceTimeout

MISSING_WRITE_KEY = "missing write key (HTTP Basic user name, writeKey in the body or in the query)"
UNKNOWN_WRITE_KEY = "unknown write key"
INVALID_WRITE_KEY = "invalid write key"  # RudderStack's words: its mobile SDKs stop retrying on them
PULL_SOURCE_WRITE_KEY = "the write key of a pull source cannot send events (its data comes through its own path)"
MISSING_TOKEN = "missing bearer token (Authorization: Bearer TOKEN)"
UNKNOWN_TOKEN = "unknown bearer token"
NOT_ALLOWED = "this token may not use this endpoint"
EVENT_LOG_UNAVAILABLE = "event log unavailable, retry later"
EVENT_LOG_REFUSED = "event log refused the write"
NO_CLICKHOUSE = "this process has no ClickHouse connection"
NO_AUDIENCES = "audiences are not served by this process"
NO_INDEX = "the serving index is not available in this process"
NO_COLLECTOR = "the collector is not served by this process"
NO_ANALYST_SQL = "this process has no ClickHouse connection"
NO_LIVE = "the console's figures are served by the query API process"
NO_REGULATIONS = "privacy regulations are run by the query API process"
RETRY_LATER = {"Retry-After": "5"}


class ApiError(Exception):
    """An answer other than success: the status, a one-line summary and, where known, the fields at fault."""

    def __init__(
        self,
        status_code: int,
        message: str,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.errors = list(errors)
        self.headers = headers


def unknown_id_type(allowed: frozenset[str]) -> ApiError:
    return ApiError(400, f"id_type: must be one of {', '.join(sorted(allowed))}")


def answer(error: ApiError) -> JSONResponse:
    return JSONResponse(error_body(error.message, error.errors), error.status_code, headers=error.headers)


def as_api_error(exc: Exception) -> ApiError:
    """The answer for anything a route may raise on purpose."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, EventTooLarge):
        return ApiError(413, str(exc), exc.errors)
    if isinstance(exc, EventError):
        return ApiError(400, str(exc), exc.errors)
    if isinstance(exc, BodyError):
        return ApiError(exc.status_code, str(exc))
    if isinstance(exc, RuleError):
        return ApiError(422, str(exc), [exc.to_field_error()])
    if isinstance(exc, ValidationError):
        errors = from_validation_error(exc)
        return ApiError(422, "; ".join(str(e) for e in errors), errors)
    if isinstance(exc, ProduceTimeout):
        return ApiError(503, EVENT_LOG_UNAVAILABLE, headers=RETRY_LATER)
    if isinstance(exc, RequestValidationError):
        fields = [FieldError(format_loc(p for p in e["loc"] if p != "body"), e["msg"]) for e in exc.errors()]
        return ApiError(422, "invalid request", fields)
    if isinstance(exc, StarletteHTTPException):
        return ApiError(exc.status_code, str(exc.detail), headers=dict(exc.headers) if exc.headers else None)
    raise TypeError(f"no answer for {type(exc).__name__}")  # pragma: no cover - install() lists what comes here


async def _handle(_: Request, exc: Exception) -> JSONResponse:
    return answer(as_api_error(exc))


HANDLED: tuple[type[Exception], ...] = (
    ApiError,
    EventError,
    BodyError,
    RuleError,
    ValidationError,
    ProduceTimeout,
    RequestValidationError,
    StarletteHTTPException,
)


def install(app: FastAPI) -> None:
    """One handler for every error class the API answers on purpose (EventTooLarge is an EventError)."""
    for kind in HANDLED:
        app.add_exception_handler(kind, _handle)
