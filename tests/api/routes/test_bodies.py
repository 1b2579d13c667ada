"""Every route that reads a body reads it within CDP_MAX_REQUEST_BYTES, on the wire and after gzip: the admin
routes as well as the collector (a body read whole would let one request take the process's memory)."""

from __future__ import annotations

import gzip

import orjson
import pytest

from tests.api.routes.fixtures import ADMIN, WRITE_KEY, client, error_of, services

LIMIT = 10_000


def oversized(path: str) -> bytes:
    if path == "/v1/sql":
        return orjson.dumps({"query": "SELECT 1 -- " + "x" * LIMIT})
    return orjson.dumps({"name": "x", "scope": "profile", "rule": {"trait": "t", "op": "eq", "value": "x" * LIMIT}})


@pytest.mark.parametrize("path", ["/v1/sql", "/v1/audiences"])
def test_admin_body_over_the_limit_is_413(path: str) -> None:
    http = client(services(max_request_bytes=LIMIT))
    assert "exceeds" in error_of(http.post(path, content=oversized(path), headers=ADMIN), 413)["error"]


@pytest.mark.parametrize("path", ["/v1/sql", "/v1/audiences"])
def test_admin_gzip_that_inflates_over_the_limit_is_413(path: str) -> None:
    http = client(services(max_request_bytes=LIMIT))
    bomb = gzip.compress(oversized(path) + b" " * LIMIT * 10)
    assert len(bomb) < LIMIT
    response = http.post(path, content=bomb, headers={**ADMIN, "Content-Encoding": "gzip"})
    assert "decompressed" in error_of(response, 413)["error"]


def test_collector_body_over_the_limit_is_413() -> None:
    http = client(services(max_request_bytes=LIMIT))
    batch = orjson.dumps({"batch": [{"type": "track", "event": "e", "anonymousId": "a"}] * 300})
    assert len(batch) > LIMIT
    assert "exceeds" in error_of(http.post("/v1/batch", content=batch, auth=(WRITE_KEY, "")), 413)["error"]
