"""Validation errors for Segment-style events, shaped for HTTP answers.

Why a module of its own: the collector, the offline importer (`cdp import`) and the tests all need to
say *which* field of *which* event was wrong, in one format. SDK authors and support staff read these
answers, so every error names a dotted JSON path (``batch[3].event``, ``context.traits``) rather than a
pydantic tuple, and the HTTP body always has the same shape::

    {"success": false, "error": "<summary>", "errors": [{"loc": "...", "msg": "..."}]}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

__all__ = [
    "BatchItemError",
    "EventError",
    "FieldError",
    "error_body",
    "format_loc",
    "from_validation_error",
    "join_loc",
]

# A mapping key that can be written after a dot without ambiguity; anything else is bracket-quoted.
_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field.

    ``loc`` is a dotted JSON path ("userId", "context.traits", "batch[3].event"); the empty string
    means the event (or request) as a whole. Frozen so errors can be shared and compared in tests.
    """

    loc: str
    msg: str

    def to_dict(self) -> dict[str, str]:
        """The JSON form used in HTTP answers and logs."""
        return {"loc": self.loc, "msg": self.msg}

    def __str__(self) -> str:
        return f"{self.loc}: {self.msg}" if self.loc else self.msg


@dataclass(frozen=True, slots=True)
class BatchItemError:
    """The errors of one item of a ``/v1/batch`` request.

    A batch is accepted item by item (the good items are kept), so the caller needs the index to tell
    the client which ones were dropped. The ``loc`` of each error already carries the ``batch[i]``
    prefix, so the errors can be flattened into one list without losing that information.
    """

    index: int
    errors: list[FieldError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the index and the item's errors."""
        return {"index": self.index, "errors": [e.to_dict() for e in self.errors]}


class EventError(Exception):
    """A whole event (or a whole request) was rejected; ``errors`` says why, field by field.

    It is an exception rather than a return value because a rejected single event or a malformed
    batch envelope ends the request: the HTTP layer turns it into a 400 with :meth:`to_body`.
    """

    def __init__(self, errors: Sequence[FieldError], summary: str = "invalid event") -> None:
        self.errors: list[FieldError] = list(errors)
        self.summary = summary
        super().__init__(self._message())

    def _message(self) -> str:
        if not self.errors:
            return self.summary
        return f"{self.summary}: " + "; ".join(str(e) for e in self.errors)

    def to_body(self) -> dict[str, Any]:
        """The JSON answer for this error (see the module docstring for the shape)."""
        return error_body(self._message(), self.errors)


def error_body(summary: str, errors: Iterable[FieldError]) -> dict[str, Any]:
    """Build the standard failure body, so every endpoint answers in the same shape."""
    return {"success": False, "error": summary, "errors": [e.to_dict() for e in errors]}


def format_loc(loc: Iterable[str | int]) -> str:
    """Turn a pydantic-style location tuple into a dotted JSON path.

    ``("context", "traits", "emails", 0)`` becomes ``context.traits.emails[0]``; keys that are not
    plain identifiers are bracket-quoted (``properties["a.b"]``) so the path stays unambiguous.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out


def join_loc(prefix: str, loc: str) -> str:
    """Prefix a path (``batch[3]`` + ``event`` -> ``batch[3].event``), handling empty parts."""
    if not prefix:
        return loc
    if not loc:
        return prefix
    if loc.startswith("["):
        return prefix + loc
    return f"{prefix}.{loc}"


# pydantic's built-in messages are written for Python developers; these read better for SDK users.
_MESSAGES = {
    "missing": "required",
    "dict_type": "must be a JSON object",
    "string_type": "must be a string",
    "list_type": "must be an array",
}


def from_validation_error(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """Convert a pydantic ``ValidationError`` into :class:`FieldError` objects with dotted paths.

    ``prefix`` is prepended to every path, e.g. ``batch[3]`` for the fourth item of a batch.
    """
    out: list[FieldError] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = join_loc(prefix, format_loc(err["loc"]))
        out.append(FieldError(loc=loc, msg=_MESSAGES.get(err["type"], err["msg"])))
    return out
