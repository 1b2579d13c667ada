"""Error paths and the HTTP error body shape."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.errors import (
    BatchItemError,
    EventError,
    FieldError,
    error_body,
    format_loc,
    from_validation_error,
    join_loc,
)


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), ""),
        (("userId",), "userId"),
        (("context", "traits", "emails", 0), "context.traits.emails[0]"),
        ((3, "event"), "[3].event"),
        (("properties", "a.b"), 'properties["a.b"]'),
        (("properties", 'q"x'), 'properties["q\\"x"]'),
    ],
)
def test_format_loc(loc: tuple[Any, ...], path: str) -> None:
    assert format_loc(loc) == path


def test_join_loc() -> None:
    assert join_loc("batch[3]", "event") == "batch[3].event"
    assert join_loc("batch[3]", "") == "batch[3]"
    assert join_loc("", "event") == "event"
    assert join_loc("batch", "[2]") == "batch[2]"


class _Model(BaseModel):
    name: str
    tags: list[int]


def test_from_validation_error_gives_dotted_paths() -> None:
    with pytest.raises(ValidationError) as info:
        _Model.model_validate({"tags": [1, "x"]})
    errors = from_validation_error(info.value, prefix="batch[2]")
    assert [e.loc for e in errors] == ["batch[2].name", "batch[2].tags[1]"]
    assert errors[0].msg == "required"


def test_http_body_shape() -> None:
    exc = EventError([FieldError("event", "required"), FieldError("userId", "bad")])
    body = exc.to_body()
    assert body["success"] is False
    assert isinstance(body["error"], str) and "event: required" in body["error"]
    assert body["errors"] == [{"loc": "event", "msg": "required"}, {"loc": "userId", "msg": "bad"}]
    assert error_body("x", []) == {"success": False, "error": "x", "errors": []}
    assert "userId: bad" in str(exc)


def test_batch_item_error_dict() -> None:
    item = BatchItemError(3, [FieldError("batch[3].event", "required")])
    assert item.to_dict() == {"index": 3, "errors": [{"loc": "batch[3].event", "msg": "required"}]}
