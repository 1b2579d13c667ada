"""Bounded reading of HTTP request bodies, with incremental gzip/deflate decoding.

Why: Starlette has no request-body limit (encode/starlette #890, #2155); ``await request.body()`` would
buffer whatever a client sends, and a gzip bomb (a few KB that inflate to gigabytes) would exhaust
memory. Here bytes are counted while they arrive, and decompression goes through
``zlib.decompressobj`` with ``max_length``, so neither the wire size nor the *decompressed* size can
exceed the limit by more than one chunk of work: we stop as soon as the limit is crossed.

The JSON parser accepts a body whatever its Content-Type, because ``navigator.sendBeacon`` (used by
browser SDKs on page unload) sends ``text/plain``.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson

__all__ = [
    "BadBody",
    "BodyError",
    "BodyTooLarge",
    "UnsupportedEncoding",
    "check_content_length",
    "parse_json_body",
    "read_body",
]

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # gzip header and trailer
_ZLIB_WBITS: Final = zlib.MAX_WBITS  # RFC 1950 zlib stream (what "deflate" means per the RFC)
_RAW_WBITS: Final = -zlib.MAX_WBITS  # bare RFC 1951 stream (what some clients send as "deflate")
_UTF8_BOM: Final = b"\xef\xbb\xbf"


class BodyError(Exception):
    """A request body that cannot be accepted; ``status_code`` is the HTTP answer to give."""

    status_code: int = 400

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class BodyTooLarge(BodyError):
    """The body (on the wire or once decompressed) is over the limit: HTTP 413."""

    status_code = 413


class BadBody(BodyError):
    """The body is malformed (bad gzip, bad JSON, not an object, empty): HTTP 400."""

    status_code = 400


class UnsupportedEncoding(BadBody):
    """A Content-Encoding we do not decode: HTTP 415 (Unsupported Media Type)."""

    status_code = 415


def check_content_length(value: str | None, limit: int) -> None:
    """Refuse early when a declared Content-Length is already over the limit.

    Cheap pre-check before reading anything; :func:`read_body` still counts, because the header can
    be absent (chunked transfer) or lie.
    """
    if value is None:
        return
    try:
        declared = int(value.strip())
    except ValueError:
        raise BadBody("invalid Content-Length header") from None
    if declared < 0:
        raise BadBody("invalid Content-Length header")
    if declared > limit:
        raise BodyTooLarge(f"request body exceeds {limit} bytes")


def _coding(content_encoding: str | None) -> str:
    """Normalise Content-Encoding to "identity", "gzip" or "deflate"; refuse anything else.

    The header may list several codings; "identity" entries are no-ops. Stacked real codings (e.g.
    "gzip, gzip") are refused rather than decoded, since no SDK sends them.
    """
    if content_encoding is None:
        return "identity"
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return "identity"
    if len(codings) == 1:
        if codings[0] in ("gzip", "x-gzip"):
            return "gzip"
        if codings[0] == "deflate":
            return "deflate"
    raise UnsupportedEncoding(f"unsupported content encoding: {content_encoding}")


class _Inflater:
    """Incremental, size-bounded gzip/deflate decoder.

    Each ``feed`` asks zlib for at most ``room + 1`` output bytes, where ``room`` is what is left
    under the limit; getting that extra byte proves the limit is crossed, and we raise without ever
    holding more than ``limit + 1`` decoded bytes.
    """

    def __init__(self, coding: str, limit: int) -> None:
        self.coding = coding
        self.limit = limit
        self.out = bytearray()
        self._d: Any = None  # the current zlib.Decompress (gzip may have several members)
        self._head = b""  # first bytes of a deflate body, kept until its header can be sniffed

    def _invalid(self) -> BadBody:
        return BadBody(f"invalid {self.coding} body")

    def _new(self, first: bytes) -> Any:
        if self.coding == "gzip":
            return zlib.decompressobj(_GZIP_WBITS)
        # "deflate" should be a zlib stream (RFC 1950), but some clients send raw deflate: sniff the
        # header (compression method 8, and CMF*256+FLG divisible by 31).
        if first[0] & 0x0F == 8 and ((first[0] << 8) | first[1]) % 31 == 0:
            return zlib.decompressobj(_ZLIB_WBITS)
        return zlib.decompressobj(_RAW_WBITS)

    def feed(self, data: bytes) -> None:
        if self._d is None and self.coding == "deflate":
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            self._head = b""
        while data:
            if self._d is None:
                self._d = self._new(data)
            elif self._d.eof:
                if self.coding != "gzip":
                    raise self._invalid()  # trailing bytes after a deflate stream
                # gzip allows several members back to back (RFC 1952 section 2.2): start the next.
                self._d = zlib.decompressobj(_GZIP_WBITS)
            try:
                piece = self._d.decompress(data, self.limit - len(self.out) + 1)
            except zlib.error:
                raise self._invalid() from None
            self.out += piece
            if len(self.out) > self.limit:
                raise BodyTooLarge(f"decompressed request body exceeds {self.limit} bytes")
            # Input zlib did not take (output cap reached) or bytes after the end of this member.
            data = self._d.unconsumed_tail or self._d.unused_data

    def finish(self) -> bytes:
        if self._d is None and not self._head:
            return b""  # an empty body is empty whatever its declared coding
        if self._d is None or not self._d.eof:
            raise self._invalid()  # truncated stream
        return bytes(self.out)


async def read_body(receive_chunks: AsyncIterator[bytes], content_encoding: str | None, limit: int) -> bytes:
    """Read a request body of at most ``limit`` bytes, decoding gzip/deflate on the fly.

    ``receive_chunks`` is typically ``request.stream()``. The limit applies to the bytes received and,
    for compressed bodies, to the decompressed bytes as well. Raises :class:`BodyTooLarge` as soon as
    either is crossed (without reading further), :class:`BadBody` for a corrupt or truncated
    compressed stream, and :class:`UnsupportedEncoding` for an unknown Content-Encoding (checked
    before reading anything).
    """
    coding = _coding(content_encoding)
    received = 0
    if coding == "identity":
        parts: list[bytes] = []
        async for chunk in receive_chunks:
            received += len(chunk)
            if received > limit:
                raise BodyTooLarge(f"request body exceeds {limit} bytes")
            if chunk:
                parts.append(chunk)
        return b"".join(parts)

    inflater = _Inflater(coding, limit)
    async for chunk in receive_chunks:
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(f"request body exceeds {limit} bytes")
        inflater.feed(chunk)
    return inflater.finish()


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """Parse a request body as a JSON object, whatever Content-Type the client declared.

    Raises :class:`BadBody` for an empty body, invalid JSON (with orjson's position), or JSON that is
    not an object (Segment bodies are always objects; ``[...]`` or ``"x"`` is a client bug).
    A leading UTF-8 byte-order mark is tolerated, as some HTTP clients on Windows add one.
    """
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
    if not raw.strip():
        raise BadBody("empty request body")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadBody(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadBody(f"JSON body must be an object, got {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"
