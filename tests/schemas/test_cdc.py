"""Row changes -> Segment events through the shipped table mappings (pure: no database, no Kafka)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.cdc import TableMapping, change_event, parse_change, row_key
from schemas.mapping import MappingError
from schemas.mappings import mapping_text
from schemas.validation import offline_invalid_reason

CONTACTS = TableMapping.from_yaml(mapping_text("contacts"))
ORDERS = TableMapping.from_yaml(mapping_text("orders"))
UPDATED_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z


def contact(**over: Any) -> dict[str, Any]:
    row = {
        "id": 7,
        "customer_id": None,
        "email": "Ann@Example.com",
        "phone": None,
        "first_name": "Ann",
        "last_name": "Lee",
        "company": None,
        "plan": "gold",
        "lifecycle_stage": "customer",
        "created_at": "2024-04-01T09:00:00.000000Z",  # timestamptz: ISO text
        "updated_at": UPDATED_MS,  # timestamp: milliseconds (time.precision.mode=connect)
        "internal_notes": "not for the CDP",
    }
    return row | over


def record(op: str, after: dict[str, Any] | None, before: dict[str, Any] | None = None, **source: Any) -> Any:
    src = {"ts_ms": UPDATED_MS + 5000, "lsn": 1000, "snapshot": "false"} | source
    return {"op": op, "before": before, "after": after, "source": src, "ts_ms": src["ts_ms"] + 10}


def event_of(mapping: TableMapping, key: Any, value: Any, table: str = "crm.contacts") -> dict[str, Any] | None:
    change = parse_change(key, value)
    assert change is not None
    return change_event(mapping, "crm", table, change)


def test_contact_row_becomes_an_identify_with_identifiers_and_traits() -> None:
    event = event_of(CONTACTS, {"id": 7}, record("c", contact()))
    assert event is not None
    assert event["type"] == "identify"
    assert event["traits"] == {
        "crm_id": "7",
        "email": "Ann@Example.com",
        "first_name": "Ann",
        "last_name": "Lee",
        "company": None,
        "plan": "gold",
        "lifecycle_stage": "customer",
        "created_at": "2024-04-01T09:00:00.000Z",
    }
    assert "internal_notes" not in str(event)  # columns the mapping does not name stay in the database
    assert event["timestamp"] == "2024-05-01T10:00:00.000Z"  # the row's updated_at, not the commit time
    assert "userId" not in event  # a null identifier is left out
    assert offline_invalid_reason(event) is None  # the crm_id and e-mail stand in for userId


def test_customer_id_becomes_the_user_id() -> None:
    event = event_of(CONTACTS, {"id": 7}, record("u", contact(customer_id=42)))
    assert event is not None and event["userId"] == "42"


def test_snapshot_and_stream_of_the_same_row_state_share_a_message_id() -> None:
    snapshot = event_of(CONTACTS, {"id": 7}, record("r", contact(), lsn=500, ts_ms=UPDATED_MS + 99_000))
    streamed = event_of(CONTACTS, {"id": 7}, record("c", contact(), lsn=1000))
    assert snapshot is not None and streamed is not None
    assert snapshot["messageId"] == streamed["messageId"]  # a re-snapshot stores nothing twice


def test_every_new_state_of_a_row_is_a_new_event() -> None:
    first = event_of(CONTACTS, {"id": 7}, record("c", contact()))
    second = event_of(CONTACTS, {"id": 7}, record("u", contact(plan="platinum", updated_at=UPDATED_MS + 1)))
    other_row = event_of(CONTACTS, {"id": 8}, record("c", contact(id=8)))
    assert first is not None and second is not None and other_row is not None
    assert len({first["messageId"], second["messageId"], other_row["messageId"]}) == 3


def test_contact_delete_unsets_the_traits_and_keeps_the_identifiers() -> None:
    before = contact(plan="gold")
    event = event_of(CONTACTS, {"id": 7}, record("d", None, before, lsn=2000))
    assert event is not None
    traits = event["traits"]
    assert traits["crm_id"] == "7" and traits["email"] == "Ann@Example.com"  # still finds the profile
    assert {k for k, v in traits.items() if v is None} == {
        "first_name",
        "last_name",
        "company",
        "plan",
        "lifecycle_stage",
        "created_at",
    }
    assert event["timestamp"] == "2024-05-01T10:00:05.000Z"  # the delete's commit time: after the row's states
    again = event_of(CONTACTS, {"id": 7}, record("d", None, before, lsn=2000))
    assert again is not None and again["messageId"] == event["messageId"]  # a redelivered delete


def test_contact_delete_with_only_the_key_still_finds_the_profile() -> None:
    """Without REPLICA IDENTITY FULL Debezium's before image holds the key and defaults (0, 1970) elsewhere."""
    junk = {k: None for k in contact()} | {"id": 7, "updated_at": 0, "created_at": "1970-01-01T00:00:00Z"}
    mapping = TableMapping.from_yaml(mapping_text("contacts").replace("replica_identity: full", ""))
    event = event_of(mapping, {"id": 7}, record("d", None, junk))
    assert event is not None
    assert event["traits"]["crm_id"] == "7"
    assert event["traits"]["created_at"] is None  # the default in the before image is not taken for a value
    assert offline_invalid_reason(event) is None


def order(**over: Any) -> dict[str, Any]:
    row = {
        "id": 1001,
        "contact_id": 7,
        "customer_id": None,
        "customer_email": "ann@example.com",
        "total": "125.50",  # numeric as text (decimal.handling.mode=string)
        "currency": "EUR",
        "status": "paid",
        "created_at": UPDATED_MS,
    }
    return row | over


def test_order_row_becomes_order_completed_with_revenue() -> None:
    event = event_of(ORDERS, {"id": 1001}, record("c", order()), "shop.orders")
    assert event is not None
    assert (event["type"], event["event"]) == ("track", "Order Completed")
    assert event["properties"] == {"order_id": "1001", "revenue": 125.5, "currency": "EUR", "status": "paid"}
    assert event["context"]["traits"] == {"crm_id": "7", "email": "ann@example.com"}
    assert event["timestamp"] == "2024-05-01T10:00:00.000Z"


def test_an_order_update_replaces_its_event() -> None:
    """One order is one event: same messageId and time, so the store keeps the latest total only."""
    first = event_of(ORDERS, {"id": 1001}, record("c", order()), "shop.orders")
    fixed = event_of(ORDERS, {"id": 1001}, record("u", order(total="99.00")), "shop.orders")
    assert first is not None and fixed is not None
    assert fixed["messageId"] == first["messageId"] and fixed["timestamp"] == first["timestamp"]
    assert fixed["properties"]["revenue"] == 99.0


def test_an_order_delete_voids_its_revenue() -> None:
    created = event_of(ORDERS, {"id": 1001}, record("c", order()), "shop.orders")
    deleted = event_of(ORDERS, {"id": 1001}, record("d", None, order(), ts_ms=UPDATED_MS + 9000), "shop.orders")
    assert created is not None and deleted is not None
    assert deleted["messageId"] == created["messageId"] and deleted["timestamp"] == created["timestamp"]
    # The store keeps the later commit, whichever arrives last (sinks/views/events_landing_mv.sql).
    assert deleted["sourceVersion"] > created["sourceVersion"]
    assert deleted["properties"] == {"order_id": "1001", "currency": "EUR", "status": "paid", "deleted": True}


def test_an_order_delete_without_the_old_row_is_an_error_not_a_guess() -> None:
    with pytest.raises(MappingError, match="REPLICA IDENTITY FULL"):
        event_of(ORDERS, {"id": 1001}, record("d", None, None), "shop.orders")


def test_a_column_of_the_wrong_type_names_the_column() -> None:
    with pytest.raises(MappingError, match="total"):
        event_of(ORDERS, {"id": 1001}, record("c", order(total="lots")), "shop.orders")


def test_tombstones_heartbeats_and_schema_wrapped_records() -> None:
    assert parse_change({"id": 1}, None) is None
    assert parse_change(None, {"ts_ms": 1}) is None  # a heartbeat has no op
    wrapped = {"schema": {}, "payload": record("c", contact())}
    change = parse_change({"schema": {}, "payload": {"id": 7}}, wrapped)
    assert change is not None and change.key == {"id": 7} and change.op == "c"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("message_id: version", "message_id: row").replace("updated_at: timestamp", ""), "row"),
        (lambda t: t.replace("on_delete: unset", "on_delete: void"), "void"),
        (
            lambda t: t.replace("id: identifier crm_id text", "id: trait crm_id text").replace("identifier", "trait"),
            "identifier",
        ),
        (lambda t: t.replace("plan: trait", "plan: property"), "properties"),
        (lambda t: t.replace("plan: trait", "plan: colour"), "plan"),
    ],
)
def test_a_wrong_mapping_is_refused_with_the_reason(edit: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        TableMapping.from_yaml(edit(mapping_text("contacts")))


@given(
    key=st.integers(min_value=1, max_value=10**9),
    plan=st.text(max_size=20),
    lsn_a=st.integers(min_value=1),
    lsn_b=st.integers(min_value=1),
    ts=st.integers(min_value=0, max_value=10**13),
)
def test_message_id_depends_on_row_and_content_not_on_position(
    key: int, plan: str, lsn_a: int, lsn_b: int, ts: int
) -> None:
    a = event_of(CONTACTS, {"id": key}, record("r", contact(id=key, plan=plan), lsn=lsn_a, ts_ms=ts))
    b = event_of(CONTACTS, {"id": key}, record("u", contact(id=key, plan=plan), lsn=lsn_b))
    assert a is not None and b is not None and a["messageId"] == b["messageId"]
    assert row_key("crm", "crm.contacts", {"id": key}) == f'crm/crm.contacts/{{"id":{key}}}'
