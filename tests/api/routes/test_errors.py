"""One error path: every refusal, from any route or dependency, is the documented body with the right status."""

from __future__ import annotations

from tests.api.routes.fixtures import ADMIN, READ, WRITE_KEY, client, error_of, services


def test_collector_refusals_name_the_field() -> None:
    http = client(services())
    assert (
        "missing write key" in error_of(http.post("/v1/track", json={"event": "x", "anonymousId": "a"}), 401)["error"]
    )
    unknown = http.post("/v1/track", json={"event": "x", "anonymousId": "a"}, auth=("wk_nobody", ""))
    assert "unknown write key" in error_of(unknown, 401)["error"]
    invalid = error_of(http.post("/v1/track", json={"anonymousId": "a"}, auth=(WRITE_KEY, "")), 400)
    assert [e["loc"] for e in invalid["errors"]] == ["event"]
    big = {"event": "x", "anonymousId": "a", "properties": {"b": "x" * 40_000}}
    assert "32768" in error_of(http.post("/v1/track", json=big, auth=(WRITE_KEY, "")), 413)["error"]
    batch = error_of(http.post("/v1/batch", json={"batch": 3}, auth=(WRITE_KEY, "")), 400)
    assert [e["loc"] for e in batch["errors"]] == ["batch"]
    assert "JSON" in error_of(http.post("/v1/track", content=b"{nope", auth=(WRITE_KEY, "")), 400)["error"]


def test_admin_and_query_refusals_share_the_shape() -> None:
    http = client(services())
    assert error_of(http.get("/v1/audiences"), 401)["error"].startswith("missing bearer token")
    assert error_of(http.get("/v1/audiences", headers=READ), 403)["error"].startswith("this token may not use")
    assert error_of(http.get("/v1/audiences", headers={"Authorization": "Bearer nope"}), 401)["error"] == (
        "unknown bearer token"
    )
    assert "not found" in error_of(http.get("/v1/audiences/aud_x", headers=ADMIN), 404)["error"]
    rule = {"name": "x", "scope": "profile", "rule": {"all": [{"trait": "plan", "op": "like", "value": "a"}]}}
    refused = error_of(http.post("/v1/audiences", json=rule, headers=ADMIN), 422)
    assert [e["loc"] for e in refused["errors"]] == ["rule.all[0].op"]
    nameless = error_of(http.post("/v1/audiences", json={**rule, "name": None} | {"rule": {}}, headers=ADMIN), 422)
    assert nameless["error"].startswith("name:") and [e["loc"] for e in nameless["errors"]] == ["name"]
    assert "no ClickHouse" in error_of(http.post("/v1/sql", json={"query": "SELECT 1"}, headers=ADMIN), 503)["error"]
    assert "id_type" in error_of(http.get("/v1/lookup/shoe_size/42", headers=READ), 400)["error"]
    assert error_of(http.get("/v1/nowhere"), 404)["error"] == "Not Found"
