import pytest

from schemas.offline import RowError, row_event
from schemas.validation import offline_invalid_reason


def test_till_receipt_becomes_an_order() -> None:
    e = row_event(
        {
            "receipt_id": "R1",
            "timestamp": "2026-01-02T10:00:00Z",
            "Email": " A@B.com ",
            "phone": "+49 30 1234567",
            "loyalty_id": "L9",
            "total": "12,50",
            "currency": "EUR",
            "store_id": "S1",
            "items": '[{"sku": "X"}]',
        }
    )
    assert e["type"] == "track" and e["event"] == "Order Completed" and e["messageId"] == "receipt-R1"
    assert e["properties"] == {
        "order_id": "R1",
        "revenue": 12.5,
        "items": [{"sku": "X"}],
        "currency": "EUR",
        "store_id": "S1",
    }
    assert e["context"]["traits"] == {"email": "A@B.com", "phone": "+49 30 1234567", "loyalty_id": "L9"}
    assert offline_invalid_reason(e) is None  # no userId/anonymousId needed when an identifier trait is there


def test_crm_contact_becomes_an_identify() -> None:
    e = row_event({"crm_id": "C7", "email": "x@y.z", "first_name": "Ann", "updated_at": "2026-02-01T00:00:00Z"})
    assert e["type"] == "identify" and e["traits"]["crm_id"] == "C7" and e["messageId"] == "crm-C7-2026-02-01T00:00:00Z"
    assert offline_invalid_reason(e) is None


@pytest.mark.parametrize(
    "row,column",
    [
        ({"receipt_id": "", "email": "a@b.c"}, "receipt_id"),
        ({"receipt_id": "R", "store_id": "S"}, "email"),
        ({"receipt_id": "R", "email": "a@b.c", "total": "lots"}, "total"),
        ({"name": "?"}, "header"),
    ],
)
def test_bad_rows_name_the_column(row: dict, column: str) -> None:
    with pytest.raises(RowError, match=column):
        row_event(row)


def test_an_event_with_no_identifier_at_all_is_refused() -> None:
    assert "userId" in (offline_invalid_reason({"type": "track", "event": "X", "traits": {"plan": "a"}}) or "")
