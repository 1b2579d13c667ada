"""Bounded body reading: limits on the wire and after decompression, gzip bombs, JSON parsing."""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.body import (
    BadBody,
    BodyTooLarge,
    UnsupportedEncoding,
    check_content_length,
    parse_json_body,
    read_body,
)


class Stream:
    """An async chunk source that records how many chunks were pulled (to prove early stops)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.pulled = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None
        self.pulled += 1
        return chunk


def chunked(data: bytes, size: int = 65536) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] + [b""]  # Starlette ends with b""


def read(data: bytes | list[bytes], encoding: str | None = None, limit: int = 1 << 20) -> bytes:
    chunks = data if isinstance(data, list) else chunked(data)
    return asyncio.run(read_body(Stream(chunks), encoding, limit))


# ---------------------------------------------------------------------------------------------
# plain bodies
# ---------------------------------------------------------------------------------------------


def test_plain_body_within_limit() -> None:
    assert read(b'{"a": 1}', None, limit=8) == b'{"a": 1}'
    assert read(b"", None) == b""
    assert read(b"abc", "identity") == b"abc"


def test_plain_limit_exceeded_stops_reading() -> None:
    stream = Stream([b"x" * 600, b"x" * 600, b"x" * 600, b"x" * 600])
    with pytest.raises(BodyTooLarge) as info:
        asyncio.run(read_body(stream, None, 1000))
    assert stream.pulled == 2  # raised at the chunk that crossed the limit, nothing more was read
    assert info.value.status_code == 413


def test_content_length_precheck() -> None:
    check_content_length(None, 10)
    check_content_length("10", 10)
    with pytest.raises(BodyTooLarge):
        check_content_length("11", 10)
    with pytest.raises(BadBody):
        check_content_length("ten", 10)
    with pytest.raises(BadBody):
        check_content_length("-1", 10)


# ---------------------------------------------------------------------------------------------
# gzip / deflate
# ---------------------------------------------------------------------------------------------


def test_gzip_ok() -> None:
    payload = b'{"batch": [' + b",".join([b'{"type":"track","event":"e","userId":"u"}'] * 500) + b"]}"
    assert read(gzip.compress(payload), "gzip") == payload
    assert read(gzip.compress(payload), "GZIP") == payload
    assert read(gzip.compress(payload), "x-gzip") == payload
    # tiny chunks exercise the incremental path
    assert read(chunked(gzip.compress(payload), 7), "gzip") == payload


def test_gzip_multiple_members() -> None:
    assert read(gzip.compress(b"hello ") + gzip.compress(b"world"), "gzip") == b"hello world"


def test_deflate_zlib_and_raw() -> None:
    assert read(zlib.compress(b"zlib stream"), "deflate") == b"zlib stream"
    raw = zlib.compressobj(wbits=-15)
    body = raw.compress(b"raw deflate") + raw.flush()
    assert read(body, "deflate") == b"raw deflate"
    assert read([zlib.compress(b"one byte chunks")[i : i + 1] for i in range(30)], "deflate") == b"one byte chunks"


def test_decompressed_size_is_bounded() -> None:
    payload = b"a" * 5000
    compressed = gzip.compress(payload)
    assert len(compressed) < 100
    assert read(compressed, "gzip", limit=5000) == payload
    with pytest.raises(BodyTooLarge, match="decompressed"):
        read(compressed, "gzip", limit=4999)


def _gzip_bomb(size: int) -> bytes:
    """``size`` bytes of zeros, gzip-compressed, built without holding ``size`` bytes at once."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    parts = [comp.compress(block) for _ in range(size // len(block))]
    parts.append(comp.flush())
    return b"".join(parts)


def test_gzip_bomb_rejected_fast_with_bounded_memory() -> None:
    bomb = _gzip_bomb(50 << 20)  # 50 MB of zeros
    assert len(bomb) < 100_000
    limit = 512 * 1024
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(BodyTooLarge):
            read(bomb, "gzip", limit=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert peak < 3 * limit, f"peak {peak} bytes"  # ~2x limit: the output buffer plus one piece
    assert elapsed < 1.0


def test_gzip_bomb_stops_pulling_chunks() -> None:
    stream = Stream(chunked(_gzip_bomb(20 << 20), 1024))
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_body(stream, "gzip", 100_000))
    assert stream.pulled <= 2


def test_compressed_wire_size_also_bounded() -> None:
    incompressible = bytes(range(256)) * 64
    with pytest.raises(BodyTooLarge):
        read(gzip.compress(incompressible), "gzip", limit=1000)


@pytest.mark.parametrize(
    "body",
    [
        b"definitely not gzip",
        gzip.compress(b'{"a": 1}')[:-6],  # truncated: no trailer
        gzip.compress(b'{"a": 1}')[:10],  # header only
        gzip.compress(b'{"a": 1}') + b"garbage",  # junk after the member
    ],
)
def test_corrupt_gzip(body: bytes) -> None:
    with pytest.raises(BadBody, match="invalid gzip body") as info:
        read(body, "gzip")
    assert info.value.status_code == 400


def test_corrupt_deflate() -> None:
    with pytest.raises(BadBody, match="invalid deflate body"):
        read(b"\xff\xfe\xfd not deflate", "deflate")
    with pytest.raises(BadBody):
        read(zlib.compress(b"x") + b"tail", "deflate")


def test_empty_gzip_body_is_empty() -> None:
    assert read(b"", "gzip") == b""


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br", "gzip, gzip"])
def test_unknown_encoding(encoding: str) -> None:
    stream = Stream([b"{}"])
    with pytest.raises(UnsupportedEncoding) as info:
        asyncio.run(read_body(stream, encoding, 100))
    assert isinstance(info.value, BadBody)
    assert info.value.status_code == 415
    assert "encoding" in str(info.value)
    assert stream.pulled == 0


def test_identity_in_list_is_ignored() -> None:
    assert read(gzip.compress(b"x"), "identity, gzip") == b"x"


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=4000), size=st.integers(1, 600), encoding=st.sampled_from(["gzip", "deflate"]))
def test_roundtrip_any_chunking(data: bytes, size: int, encoding: str) -> None:
    body = gzip.compress(data) if encoding == "gzip" else zlib.compress(data)
    if not data and encoding == "gzip":
        assert read(chunked(body, size), encoding) == b""
        return
    assert read(chunked(body, size), encoding, limit=max(len(data), len(body))) == data


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def test_json_object() -> None:
    assert parse_json_body(b'{"batch": []}') == {"batch": []}


def test_text_plain_json_from_send_beacon() -> None:
    # sendBeacon bodies arrive as text/plain; the parser does not care about the declared type
    raw = b'{"writeKey":"wk","type":"track","event":"Page Unload","anonymousId":"a"}'
    assert parse_json_body(raw)["event"] == "Page Unload"


def test_json_with_bom() -> None:
    assert parse_json_body(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@pytest.mark.parametrize("raw", [b"", b"   \n", b"\xef\xbb\xbf"])
def test_empty_body(raw: bytes) -> None:
    with pytest.raises(BadBody, match="empty"):
        parse_json_body(raw)


@pytest.mark.parametrize("raw", [b"{", b'{"a": }', b"{'a': 1}", b"\xff\xfe", b'{"a": NaN}'])
def test_invalid_json(raw: bytes) -> None:
    with pytest.raises(BadBody, match="invalid JSON") as info:
        parse_json_body(raw)
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"[1, 2]", "an array"),
        (b'"x"', "a string"),
        (b"3", "a number"),
        (b"true", "a boolean"),
        (b"null", "null"),
    ],
)
def test_non_object_json(raw: bytes, kind: str) -> None:
    with pytest.raises(BadBody, match=f"must be an object, got {kind}"):
        parse_json_body(raw)
