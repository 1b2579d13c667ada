"""The OpenAPI document lets every endpoint be tried from /docs: bodies described, both auth schemes declared."""

from __future__ import annotations

from tests.api.routes.fixtures import client, services


def test_bodies_and_auth_schemes_are_described() -> None:
    doc = client(services()).get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert {(s["type"], s["scheme"]) for s in schemes.values()} == {("http", "bearer"), ("http", "basic")}
    paths = doc["paths"]
    for path in ("/v1/track", "/v1/batch", "/v1/audiences", "/v1/sql"):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body, path
    audience = doc["components"]["schemas"]["AudienceCreate"]
    assert {"name", "scope", "rule"} <= set(audience["required"])
    assert paths["/v1/track"]["post"]["security"] == [{"writeKey": []}]
    token = [{"token": []}]
    assert paths["/v1/audiences"]["post"]["security"] == token
    assert paths["/v1/profiles/{id_type}/{value}"]["get"]["security"] == token
    assert "security" not in paths["/healthz"]["get"]
