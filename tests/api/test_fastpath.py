"""The lookup fast path answers like the documented route: auth, normalisation, errors."""

import asyncio

import orjson

from api.deps import Services
from api.fastpath import LookupFastPath
from identity.extract import identifier_keys
from identity.rules import IdentityRules
from schemas.settings import Settings
from streams.serving import MembershipIndex
from streams.topics import Topics


def _call(app: LookupFastPath, path: str, token: str | None) -> tuple[int, dict]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers}
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, None, send))
    return sent[0]["status"], orjson.loads(sent[1]["body"])


def _app() -> LookupFastPath:
    index = MembershipIndex()
    index.apply_identity({"id_type": "email", "id_value": "kim@example.com", "profile_id": "p1", "version": 1})
    index.apply_change("p1", "aud_1", True)
    settings = Settings(read_token="r3ad", admin_token="adm1n", analyst_token="an4lyst")
    services = Services(settings, Topics("t"), index=index, id_types=frozenset({"email", "profile_id"}))

    async def fallback(scope, receive, send) -> None:  # the framework behind it
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b'{"fallback": true}'})

    return LookupFastPath(fallback, services)


def test_lookup_normalises_like_the_stitcher() -> None:
    assert _call(_app(), "/v1/lookup/email/%20Kim%40Example.COM%20", "r3ad") == (200, {"audiences": ["aud_1"]})
    assert _call(_app(), "/v1/lookup/profile_id/p1", "adm1n") == (200, {"audiences": ["aud_1"]})
    assert _call(_app(), "/v1/lookup/profile_id/p1", "an4lyst") == (200, {"audiences": ["aud_1"]})
    assert _call(_app(), "/v1/lookup/email/nobody@x.com", "r3ad") == (200, {"audiences": []})


IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"


def test_advertising_ids_are_looked_up_in_any_case() -> None:
    """IDFA (upper case on iOS) and GAID (lower case on Android) are UUIDs: the stitcher keys them lower-cased, and
    a lookup in another case finds the same node."""
    rules = IdentityRules.load(None)
    (key,) = identifier_keys({"context": {"device": {"advertisingId": f" {IDFA} "}}}, rules)
    assert key == f"advertising_id:{IDFA.lower()}"
    index = MembershipIndex()
    index.apply_identity({"id_type": "advertising_id", "id_value": IDFA.lower(), "profile_id": "p9", "version": 1})
    index.apply_change("p9", "aud_9", True)
    services = Services(
        Settings(read_token="r3ad"),
        Topics("t"),
        index=index,
        id_types=frozenset({"profile_id", *rules.types}),
        rules=rules,
    )
    app = LookupFastPath(lambda *_: None, services)
    for spelling in (IDFA, IDFA.lower(), IDFA.title()):
        assert _call(app, f"/v1/lookup/advertising_id/{spelling}", "r3ad") == (200, {"audiences": ["aud_9"]})


def test_lookup_errors() -> None:
    assert _call(_app(), "/v1/lookup/email/x", None)[0] == 401
    assert _call(_app(), "/v1/lookup/email/x", "wrong")[0] == 401  # unknown token: as if none were given
    status, body = _call(_app(), "/v1/lookup/shoe_size/42", "r3ad")
    assert status == 400 and "id_type" in body["error"]
    assert _call(_app(), "/v1/lookups/email/x", "r3ad") == (404, {"fallback": True})  # not ours


def test_lookups_and_auth_failures_are_measured() -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    unknown = {"reason": "unknown_token"}
    lookups, refused = sample("cdp_lookup_seconds_count"), sample("cdp_auth_failures_total", unknown)
    _call(_app(), "/v1/lookup/email/nobody@x.com", "r3ad")
    _call(_app(), "/v1/lookup/email/nobody@x.com", "wrong")
    assert sample("cdp_lookup_seconds_count") == lookups + 1
    assert sample("cdp_auth_failures_total", unknown) == refused + 1
