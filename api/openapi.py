"""The OpenAPI document (``/openapi.json``, tried out at ``/docs``): request bodies and the two auth schemes, so
every endpoint can be called from the page.

The routes read their bodies themselves (bounded, whatever the Content-Type: api/deps.py), so FastAPI sees no
body parameter to describe; a route names its body model with :func:`json_body` instead. Who may call a route
is FastAPI's own reading of the dependencies for the bearer token (:class:`~api.auth.Requires` is a security
scheme); the collector's routes say ``WRITE_KEY`` (the source's write key as the HTTP Basic user name, as the
Segment SDKs send it), which they check in their one intake dependency.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

__all__ = ["WRITE_KEY", "WRITE_KEY_SCHEME", "install", "json_body"]

WRITE_KEY_SCHEME: dict[str, dict[str, str]] = {
    "writeKey": {
        "type": "http",
        "scheme": "basic",
        "description": "A source's write key as the user name, the password empty (`cdp sources create`).",
    },
}
WRITE_KEY: dict[str, Any] = {"security": [{"writeKey": []}]}

_BODY_MODELS: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel], *, batch: bool = False) -> dict[str, Any]:
    """``openapi_extra`` of a route whose JSON body is ``model`` (``batch``: ``{"batch": [model, ...]}``)."""
    _BODY_MODELS[model.__name__] = model
    schema: dict[str, Any] = {"$ref": f"#/components/schemas/{model.__name__}"}
    if batch:
        schema = {"type": "object", "required": ["batch"], "properties": {"batch": {"type": "array", "items": schema}}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, model in _BODY_MODELS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    components.setdefault("securitySchemes", {}).update(WRITE_KEY_SCHEME)
    return doc


def install(app: FastAPI) -> None:
    """Serve the completed document (built once, on the first request for it)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
