"""Webhook sources end to end: signed Stripe and Shopify deliveries through `cdp run` into cdp.events and the
profiles; wrong signatures, replays and malformed bodies get their documented answers and store nothing twice.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api.signatures import shopify_header, stripe_header
from tests.e2e.fixtures import in_list, suppressed_events
from tests.support.service import CdpProcess, cdp_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cdp(shared_cdp: CdpProcess) -> CdpProcess:
    return shared_cdp


@pytest.fixture(scope="module")
def stripe(cdp: CdpProcess) -> str:
    """A Stripe-style source with a generated secret (printed once by `cdp sources create`)."""
    out = cdp_cli(cdp, "sources", "create", "--name", "stripe", "--kind", "webhook", "--mapping", "stripe")
    assert out.strip().splitlines()[-1].startswith("wk_")  # the write key alone on the last line, as for SDKs
    secret = next(line.split(":", 1)[1].split()[0] for line in out.splitlines() if "secret" in line)
    assert secret.startswith("whsec_") and len(secret) > 40
    return secret


@pytest.fixture(scope="module")
def shopify(cdp: CdpProcess, tmp_path_factory) -> str:
    """A Shopify-style source whose secret the sender gave (read from a file, never from the command line)."""
    secret = f"shpss_{uuid.uuid4().hex}"
    path: Path = tmp_path_factory.mktemp("secret") / "shopify.secret"
    path.write_text(secret + "\n")
    out = cdp_cli(
        cdp,
        "sources",
        "create",
        "--name",
        "shop",
        "--kind",
        "webhook",
        "--mapping",
        "shopify",
        "--secret-file",
        str(path),
    )
    assert secret not in out
    return secret


def post_stripe(cdp: CdpProcess, secret: str, payload: Any, *, at: float | None = None, raw: bytes | None = None):
    body = raw if raw is not None else orjson.dumps(payload)
    header = stripe_header(secret, body, int(at if at is not None else time.time()))
    return httpx.post(
        f"{cdp.url}/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        timeout=10,
    )


def charge(run: str, n: int, email: str, amount: int = 2599) -> dict[str, Any]:
    return {
        "id": f"evt_{run}_{n}",
        "type": "charge.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"ch_{run}_{n}",
                "amount": amount,
                "currency": "eur",
                "billing_details": {"email": email},
                "created": int(time.time()),
            }
        },
    }


def source_line(cdp: CdpProcess, name: str) -> str:
    """The line of one source in `cdp sources list`."""
    return next(li for li in cdp_cli(cdp, "sources", "list").splitlines() if li.split()[2:3] == [name])


def count_deliveries(cdp: CdpProcess, ids: list[str]) -> int:
    return int(
        cdp.scalar(
            "SELECT count() FROM cdp.events "
            f"WHERE JSONExtractString(context, 'webhook', 'delivery_id') IN ({in_list(ids)})"
        )
    )


def test_signed_stripe_deliveries_land_on_the_profile(cdp: CdpProcess, stripe: str) -> None:
    run = uuid.uuid4().hex[:8]
    email = f"ann-{run}@example.com"
    customer = {
        "id": f"evt_{run}_c",
        "type": "customer.created",
        "created": int(time.time()),
        "data": {"object": {"id": f"cus_{run}", "email": email.upper(), "name": "Ann Lee"}},
    }
    for payload in (customer, charge(run, 1, email), charge(run, 2, email, amount=1000)):
        r = post_stripe(cdp, stripe, payload)
        assert r.status_code == 200 and r.json() == {"success": True}, r.text
    cdp.wait_for(
        "SELECT toString(round(max(revenue), 2)) FROM cdp.profiles WHERE profile_id = "
        f"(SELECT profile_id FROM cdp.identities WHERE id_type = 'email' AND id_value = '{email}')",
        "35.99",
        timeout=30,
    )
    r = httpx.get(f"{cdp.url}/v1/profiles/email/{email}", headers=cdp.admin_headers(), timeout=10)
    assert r.status_code == 200, r.text
    profile = r.json()
    assert profile["traits"]["name"] == "Ann Lee" and profile["traits"]["stripe_customer_id"] == f"cus_{run}"
    assert profile["computed"]["orders"] == 2

    # customer.deleted removes the traits it set; the e-mail stays linked.
    deleted = {**customer, "id": f"evt_{run}_d", "type": "customer.deleted", "created": int(time.time()) + 1}
    assert post_stripe(cdp, stripe, deleted).status_code == 200
    cdp.wait_for(
        f"SELECT count() FROM cdp.events WHERE JSONExtractString(context, 'webhook', 'delivery_id') = 'evt_{run}_d'",
        1,
    )
    r = httpx.get(f"{cdp.url}/v1/profiles/email/{email}", headers=cdp.admin_headers(), timeout=10)
    assert "name" not in r.json()["traits"] and "stripe_customer_id" not in r.json()["traits"]


def test_refused_deliveries_store_nothing_and_replays_store_once(cdp: CdpProcess, stripe: str) -> None:
    run = uuid.uuid4().hex[:8]
    email = f"bob-{run}@example.com"
    body = orjson.dumps(charge(run, 1, email))

    wrong = httpx.post(
        f"{cdp.url}/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": stripe_header("whsec_not_the_secret_at_all", body, int(time.time()))},
        timeout=10,
    )
    missing = httpx.post(f"{cdp.url}/v1/webhooks/stripe", content=body, timeout=10)
    stale = post_stripe(cdp, stripe, None, raw=body, at=time.time() - 3600)  # a captured delivery, replayed late
    for r in (wrong, missing, stale):
        assert r.status_code == 401 and r.json()["success"] is False, r.text
    assert "tolerance" in stale.json()["error"]

    malformed = post_stripe(cdp, stripe, None, raw=b'{"id": "evt_x", "type": ')
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]
    no_id = post_stripe(cdp, stripe, {"type": "charge.succeeded", "data": {"object": {}}})
    assert no_id.status_code == 400 and "delivery id" in no_id.json()["error"]
    ignored = post_stripe(cdp, stripe, {"id": f"evt_{run}_i", "type": "invoice.paid", "data": {"object": {}}})
    assert ignored.status_code == 200 and ignored.json()["ignored"] == "invoice.paid"
    unknown = httpx.post(f"{cdp.url}/v1/webhooks/nobody", content=body, timeout=10)
    assert unknown.status_code == 404

    # The sender's retries of one delivery (signed anew each time) are acknowledged and stored once.
    replay = charge(run, 2, email)
    for _ in range(3):
        assert post_stripe(cdp, stripe, replay).status_code == 200
    # A webhook source's write key (public, printed) is no way around the signature.
    key = source_line(cdp, "stripe").split()[-1]
    sdk = httpx.post(
        f"{cdp.url}/v1/track", json={"writeKey": key, "userId": "x", "event": "Order Completed"}, timeout=10
    )
    assert sdk.status_code == 401

    marker = charge(run, 3, email)
    assert post_stripe(cdp, stripe, marker).status_code == 200
    cdp.wait_for(f"SELECT count() FROM cdp.events WHERE JSONExtractString(properties, 'order_id') = 'ch_{run}_3'", 1)
    assert count_deliveries(cdp, [f"evt_{run}_1"]) == 0
    assert count_deliveries(cdp, [f"evt_{run}_2"]) == 1


def test_shopify_orders_create(cdp: CdpProcess, shopify: str) -> None:
    run = uuid.uuid4().hex[:8]
    order = {
        "id": int(run, 16),
        "name": "#1001",
        "email": f"carol-{run}@example.com",
        "created_at": "2024-05-01T12:00:00+02:00",
        "currency": "USD",
        "total_price": "199.65",
        "customer": {"id": 115310627314723954, "email": f"carol-{run}@example.com", "first_name": "Carol"},
        "line_items": [{"sku": "IPOD2008PINK", "quantity": 1, "price": "199.00"}],
    }
    body = orjson.dumps(order)
    headers = {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Webhook-Id": f"wh-{run}",
        "X-Shopify-Hmac-Sha256": shopify_header(shopify, body),
    }
    for _ in range(2):  # a retry of the same webhook id
        r = httpx.post(f"{cdp.url}/v1/webhooks/shop", content=body, headers=headers, timeout=10)
        assert r.status_code == 200, r.text
    bad = httpx.post(
        f"{cdp.url}/v1/webhooks/shop",
        content=body,
        headers={**headers, "X-Shopify-Webhook-Id": f"wh-{run}-2", "X-Shopify-Hmac-Sha256": shopify_header("x", body)},
        timeout=10,
    )
    assert bad.status_code == 401
    cdp.wait_for(
        f"SELECT max(JSONExtractFloat(properties, 'revenue')) FROM cdp.events "
        f"WHERE JSONExtractString(context, 'webhook', 'delivery_id') = 'wh-{run}'",
        199.65,
    )
    assert count_deliveries(cdp, [f"wh-{run}", f"wh-{run}-2"]) == 1
    assert (
        cdp.scalar(
            f"SELECT toString(timestamp) FROM cdp.events WHERE JSONExtractString(context, 'webhook', "
            f"'delivery_id') = 'wh-{run}'"
        )
        == "2024-05-01 10:00:00.000"
    )


def test_webhook_status_in_sources_list_and_metrics(cdp: CdpProcess, stripe: str) -> None:
    run = uuid.uuid4().hex[:8]
    assert post_stripe(cdp, stripe, charge(run, 1, f"dan-{run}@example.com")).status_code == 200
    metrics = httpx.get(f"{cdp.url}/metrics", timeout=10).text
    assert 'cdp_source_rows_total{kind="webhook",source="stripe"}' in metrics
    deadline = time.monotonic() + 20
    while " running " not in (line := source_line(cdp, "stripe")) and time.monotonic() < deadline:
        time.sleep(1)
    assert " running " in line, line
    assert "signature" in line  # the last refused delivery, from the test before


def test_deliveries_of_a_suppressed_person_are_acknowledged_and_dropped(cdp: CdpProcess, stripe: str) -> None:
    run = uuid.uuid4().hex[:8]
    email = f"gone-{run}@example.com"
    body = {"type": "suppress", "subjects": [{"id_type": "email", "value": email}]}
    r = httpx.post(f"{cdp.url}/v1/regulations", json=body, headers=cdp.admin_headers(), timeout=10)
    assert r.status_code == 202, r.text
    state_url = f"{cdp.url}/v1/regulations/{r.json()['id']}"
    deadline = time.monotonic() + 30
    while httpx.get(state_url, headers=cdp.admin_headers(), timeout=10).json()["status"] != "finished":
        assert time.monotonic() < deadline, "the suppression did not finish"
        time.sleep(0.1)
    before = suppressed_events(cdp)
    assert post_stripe(cdp, stripe, charge(run, 1, email.upper())).status_code == 200
    assert suppressed_events(cdp) == before + 1
    assert post_stripe(cdp, stripe, charge(run, 2, f"kept-{run}@example.com")).status_code == 200
    cdp.wait_for(
        f"SELECT count() FROM cdp.events WHERE JSONExtractString(context, 'webhook', 'delivery_id') = 'evt_{run}_2'", 1
    )
    assert count_deliveries(cdp, [f"evt_{run}_1"]) == 0
