"""Webhook payloads -> Segment events through the shipped Stripe and Shopify mappings (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.mapping import MappingError
from schemas.mappings import mapping_text
from schemas.validation import offline_invalid_reason
from schemas.webhooks import WebhookMapping, delivery_event

STRIPE = WebhookMapping.from_yaml(mapping_text("stripe"))
SHOPIFY = WebhookMapping.from_yaml(mapping_text("shopify"))


def stripe_customer(kind: str = "customer.created", **obj: Any) -> dict[str, Any]:
    customer = {
        "id": "cus_1",
        "object": "customer",
        "email": "Ann@Example.com",
        "name": "Ann Lee",
        "phone": None,
        "metadata": {},
    } | obj
    return {"id": "evt_1", "type": kind, "created": 1_714_557_600, "data": {"object": customer}}


def stripe_charge(**obj: Any) -> dict[str, Any]:
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": 2599,
        "currency": "eur",
        "billing_details": {"email": None},
        "receipt_email": "ann@example.com",
        "customer": "cus_1",
        "created": 1_714_557_600,
        "metadata": {"user_id": "u-42"},
    } | obj
    return {"id": "evt_2", "type": "charge.succeeded", "created": 1_714_557_601, "data": {"object": charge}}


def test_stripe_customer_created_is_an_identify() -> None:
    d = delivery_event(STRIPE, "stripe", {}, stripe_customer())
    assert d.delivery_id == "evt_1" and d.event is not None
    assert d.event["type"] == "identify"
    assert d.event["traits"] == {"email": "Ann@Example.com", "stripe_customer_id": "cus_1", "name": "Ann Lee"}
    assert d.event["timestamp"] == "2024-05-01T10:00:00.000Z"
    assert offline_invalid_reason(d.event) is None


def test_stripe_customer_deleted_unsets_the_traits() -> None:
    d = delivery_event(STRIPE, "stripe", {}, stripe_customer("customer.deleted"))
    assert d.event is not None
    assert d.event["traits"] == {"email": "Ann@Example.com", "stripe_customer_id": None, "name": None}


def test_stripe_charge_succeeded_is_order_completed_in_major_units() -> None:
    d = delivery_event(STRIPE, "stripe", {}, stripe_charge())
    assert d.event is not None
    assert (d.event["type"], d.event["event"]) == ("track", "Order Completed")
    assert d.event["properties"] == {"order_id": "ch_1", "revenue": 25.99, "currency": "eur"}
    assert d.event["userId"] == "u-42"
    assert d.event["context"]["traits"] == {"email": "ann@example.com", "stripe_customer_id": "cus_1"}
    yen = delivery_event(STRIPE, "stripe", {}, stripe_charge(amount=500, currency="jpy"))
    assert yen.event is not None and yen.event["properties"]["revenue"] == 500.0


def test_the_message_id_is_the_delivery_of_that_source() -> None:
    a = delivery_event(STRIPE, "stripe", {}, stripe_charge())
    retried = delivery_event(STRIPE, "stripe", {}, stripe_charge(amount=1))  # same event id: a retry
    other_source = delivery_event(STRIPE, "stripe-eu", {}, stripe_charge())
    assert a.event and retried.event and other_source.event
    assert a.event["messageId"] == retried.event["messageId"] != other_source.event["messageId"]


def test_types_the_mapping_does_not_name_are_ignored() -> None:
    d = delivery_event(STRIPE, "stripe", {}, {"id": "evt_3", "type": "invoice.paid", "data": {"object": {}}})
    assert d.event is None and d.event_type == "invoice.paid"


SHOPIFY_ORDER: dict[str, Any] = {
    "id": 820982911946154508,
    "name": "#1001",
    "email": "bob@example.com",
    "phone": None,
    "created_at": "2024-05-01T12:00:00+02:00",
    "currency": "USD",
    "total_price": "199.65",
    "customer": {"id": 115310627314723954, "email": "bob@example.com", "first_name": "Bob", "last_name": "Norman"},
    "line_items": [{"sku": "IPOD2008PINK", "quantity": 1, "price": "199.00"}],
}
SHOPIFY_HEADERS = {"X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"}


def test_shopify_orders_create_is_order_completed() -> None:
    d = delivery_event(SHOPIFY, "shop", SHOPIFY_HEADERS, SHOPIFY_ORDER)
    assert d.delivery_id == SHOPIFY_HEADERS["X-Shopify-Webhook-Id"] and d.event is not None
    assert d.event["properties"] == {
        "order_id": "820982911946154508",
        "order_number": "#1001",
        "revenue": 199.65,
        "currency": "USD",
        "products": SHOPIFY_ORDER["line_items"],
    }
    assert d.event["context"]["traits"] == {
        "email": "bob@example.com",
        "shopify_customer_id": "115310627314723954",
        "first_name": "Bob",
        "last_name": "Norman",
    }
    assert d.event["timestamp"] == "2024-05-01T10:00:00.000Z"
    assert offline_invalid_reason(d.event) is None


@pytest.mark.parametrize(
    ("headers", "payload", "message"),
    [
        ({"X-Shopify-Topic": "orders/create"}, SHOPIFY_ORDER, "X-Shopify-Webhook-Id"),
        ({"X-Shopify-Webhook-Id": "x"}, SHOPIFY_ORDER, "X-Shopify-Topic"),
        (SHOPIFY_HEADERS, [SHOPIFY_ORDER], "not a JSON object"),
    ],
)
def test_a_delivery_without_its_id_or_type_is_refused(headers: dict[str, str], payload: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        delivery_event(SHOPIFY, "shop", headers, payload)


def test_a_webhook_mapping_needs_a_known_signature() -> None:
    with pytest.raises(MappingError, match="signature"):
        WebhookMapping.from_yaml(mapping_text("stripe").replace("signature: stripe", "signature: none"))
