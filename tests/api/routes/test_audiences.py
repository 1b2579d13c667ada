"""Audience routes over hand-fed definitions: a created audience is there at once, a deleted one is gone."""

from __future__ import annotations

from tests.api.routes.fixtures import ADMIN, client, services


def test_create_get_list_delete() -> None:
    http = client(services())
    spec = {"name": "Pro", "scope": "profile", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}
    created = http.post("/v1/audiences", json=spec, headers=ADMIN)
    assert created.status_code == 201, created.text
    audience = created.json()
    assert audience["name"] == "Pro" and audience["rule"] == spec["rule"] and audience["size"] == 0
    assert http.get(f"/v1/audiences/{audience['id']}", headers=ADMIN).json()["id"] == audience["id"]
    assert [a["id"] for a in http.get("/v1/audiences", headers=ADMIN).json()["audiences"]] == [audience["id"]]
    assert http.delete(f"/v1/audiences/{audience['id']}", headers=ADMIN).status_code == 204
    assert http.get(f"/v1/audiences/{audience['id']}", headers=ADMIN).status_code == 404
