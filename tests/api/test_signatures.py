"""Webhook signature checks, Stripe and Shopify style (pure)."""

from __future__ import annotations

import pytest

from api.signatures import SignatureError, shopify_header, stripe_header, verify

SECRET = "whsec_test_0123456789abcdef"
BODY = b'{"id":"evt_1","type":"charge.succeeded"}'
NOW = 1_714_557_600


def test_stripe_signature_accepted() -> None:
    verify("stripe", SECRET, {"Stripe-Signature": stripe_header(SECRET, BODY, NOW)}, BODY, NOW + 10, 300)


def test_stripe_accepts_any_of_several_v1_signatures() -> None:
    """Stripe sends one v1 per active secret while a secret is being rolled."""
    good = stripe_header(SECRET, BODY, NOW)
    header = f"t={NOW},v1={'0' * 64},{good.split(',')[1]}"
    verify("stripe", SECRET, {"stripe-signature": header}, BODY, NOW, 300)


@pytest.mark.parametrize(
    ("headers", "body", "now", "message"),
    [
        ({}, BODY, NOW, "missing"),
        ({"Stripe-Signature": stripe_header("whsec_other_secret_value", BODY, NOW)}, BODY, NOW, "does not match"),
        ({"Stripe-Signature": stripe_header(SECRET, BODY, NOW)}, BODY + b" ", NOW, "does not match"),
        ({"Stripe-Signature": stripe_header(SECRET, BODY, NOW)}, BODY, NOW + 301, "tolerance"),
        ({"Stripe-Signature": f"v1={'a' * 64}"}, BODY, NOW, "expected t="),
        ({"Stripe-Signature": f"t={NOW},v1=zz"}, BODY, NOW, "expected t="),
    ],
)
def test_stripe_refusals(headers: dict[str, str], body: bytes, now: int, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        verify("stripe", SECRET, headers, body, now, 300)


def test_a_signature_over_another_timestamp_does_not_verify() -> None:
    """Moving t forward to dodge the tolerance breaks the signature, which covers t."""
    sig = stripe_header(SECRET, BODY, NOW).split(",")[1]
    with pytest.raises(SignatureError, match="does not match"):
        verify("stripe", SECRET, {"Stripe-Signature": f"t={NOW + 3600},{sig}"}, BODY, NOW + 3600, 300)


def test_shopify_signature() -> None:
    verify("shopify", SECRET, {"X-Shopify-Hmac-Sha256": shopify_header(SECRET, BODY)}, BODY, NOW, 300)
    for headers, message in [
        ({}, "missing"),
        ({"X-Shopify-Hmac-Sha256": "not base64!"}, "not base64"),
        ({"X-Shopify-Hmac-Sha256": shopify_header("another-secret-value", BODY)}, "does not match"),
    ]:
        with pytest.raises(SignatureError, match=message):
            verify("shopify", SECRET, headers, BODY, NOW, 300)


def test_a_source_without_a_secret_accepts_nothing() -> None:
    with pytest.raises(SignatureError, match="no secret"):
        verify("shopify", "", {"X-Shopify-Hmac-Sha256": shopify_header("", BODY)}, BODY, NOW, 300)
