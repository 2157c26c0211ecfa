"""Tests for `parse_multipart` and `Part` (streamfx/_upload/: multipart.py, framing.py,
part.py, errors.py), the upload metrics included."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamfx
from streamfx import (
    MalformedUpload,
    Part,
    UnsupportedMediaType,
    UploadError,
    UploadTooLarge,
    parse_multipart,
)
from streamfx._upload.part import disposition_params
from streamfx.metrics import InMemoryMetrics, set_metrics

BOUNDARY = "----streamfxBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
LIMITS: dict[str, Any] = {"max_size": 10_000_000, "max_part_size": 1_000_000, "max_parts": 100}
KIB = 1024


# -- helpers -------------------------------------------------------------------------


@dataclass
class Spec:
    """One part to encode: a field (no filename) or a file."""

    name: str
    content: bytes
    filename: str | None = None
    content_type: str | None = None
    extra: list[tuple[str, str]] = field(default_factory=list)


def encode(parts: Sequence[Spec], boundary: str = BOUNDARY) -> bytes:
    """Encode `parts` as a multipart/form-data body (RFC 7578), UTF-8 headers as browsers
    send them."""
    out = bytearray()
    for spec in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{spec.name}"'
        if spec.filename is not None:
            disposition += f'; filename="{spec.filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if spec.content_type is not None:
            out += f"Content-Type: {spec.content_type}\r\n".encode()
        for key, value in spec.extra:
            out += f"{key}: {value}\r\n".encode()
        out += b"\r\n" + spec.content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def raw_part(headers: bytes, content: bytes, boundary: str = BOUNDARY) -> bytes:
    """One part with hand-written header lines (each ending in CRLF)."""
    return f"--{boundary}\r\n".encode() + headers + b"\r\n" + content + b"\r\n"


def closing(boundary: str = BOUNDARY) -> bytes:
    return f"--{boundary}--\r\n".encode()


class Body:
    """A request body that yields `data` in chunks (sizes taken in turn from `sizes`)
    and records how much was read and whether it was closed."""

    def __init__(self, data: bytes, sizes: int | Sequence[int] = 64 * KIB) -> None:
        self.data = data
        self.sizes = [sizes] if isinstance(sizes, int) else list(sizes)
        self.sent = 0
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            offset = 0
            index = 0
            while offset < len(self.data):
                size = self.sizes[index % len(self.sizes)]
                index += 1
                chunk = self.data[offset : offset + size]
                offset += len(chunk)
                self.sent += len(chunk)
                yield chunk
        finally:
            self.closed = True

    @property
    def fully_read(self) -> bool:
        return self.sent == len(self.data)


Result = list[tuple[str, str | None, str | None, bytes]]


async def collect(body: Body, content_type: str = CONTENT_TYPE, **kwargs: Any) -> Result:
    out: Result = []
    async with parse_multipart(body, content_type, **{**LIMITS, **kwargs}) as parts:
        async for part in parts:
            out.append((part.name, part.filename, part.content_type, await part.read()))
    return out


async def collect_until_error(body: Body, **kwargs: Any) -> tuple[Result, UploadError]:
    """The parts read (with the content received so far) and the error that ended it."""
    out: Result = []
    try:
        async with parse_multipart(body, CONTENT_TYPE, **{**LIMITS, **kwargs}) as parts:
            async for part in parts:
                out.append((part.name, part.filename, part.content_type, b""))
                async for chunk in part:
                    name, filename, content_type, content = out[-1]
                    out[-1] = (name, filename, content_type, content + chunk)
    except UploadError as error:
        return out, error
    raise AssertionError(f"no UploadError; parts read: {out}")


def expected(specs: Sequence[Spec]) -> Result:
    return [(s.name, s.filename, s.content_type, s.content) for s in specs]


# -- well-formed bodies ------------------------------------------------------------------


async def test_fields_and_files_in_order() -> None:
    specs = [
        Spec("title", b"holiday"),
        Spec("photo", b"\x89PNG\r\n\x1a\n" * 100, "beach.png", "image/png"),
        Spec("empty", b""),
        Spec("notes", b"line 1\r\nline 2\r\n--not a boundary\r\n", "notes.txt", "text/plain"),
    ]
    body = Body(encode(specs))
    assert await collect(body) == expected(specs)
    assert body.closed


async def test_every_chunk_size_gives_the_same_parts() -> None:
    specs = [Spec("a", b"x\r\n--" * 50), Spec("b", b"y" * 1000, "b.bin"), Spec("c", b"\r\n")]
    data = encode(specs)
    for size in (1, 2, 3, 5, 17, 64, 1000, len(data)):
        assert await collect(Body(data, size)) == expected(specs)


names = st.text(
    st.characters(blacklist_characters='"\\\r\n', blacklist_categories=("Cs", "Cc")),
    min_size=1,
    max_size=12,
)
tricky = st.sampled_from([b"\r", b"\n", b"\r\n", b"-", b"--", b"\r\n--", BOUNDARY[:9].encode()])
contents = st.binary(max_size=300) | st.lists(tricky | st.binary(max_size=5)).map(b"".join)
specs_strategy = st.lists(
    st.builds(
        Spec,
        name=names,
        content=contents,
        filename=st.none() | names,
        content_type=st.none() | st.sampled_from(["text/plain", "image/png", "application/pdf"]),
    ),
    max_size=6,
)
chunkings = st.lists(st.integers(1, 120), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=specs_strategy, sizes=chunkings)
async def test_any_chunking_gives_back_the_parts(specs: list[Spec], sizes: list[int]) -> None:
    assert await collect(Body(encode(specs), sizes)) == expected(specs)


@settings(max_examples=100, deadline=None)
@given(specs=specs_strategy.filter(bool), sizes=chunkings, data=st.data())
async def test_a_truncated_body_is_refused_the_same_way_for_any_chunking(
    specs: list[Spec], sizes: list[int], data: st.DataObject
) -> None:
    whole = encode(specs)
    cut = data.draw(st.integers(0, len(whole) - len(b"--\r\n") - 1), label="cut")
    body = whole[:cut]
    reference = await collect_until_error(Body(body))
    chunked = await collect_until_error(Body(body, sizes))
    assert isinstance(chunked[1], MalformedUpload)
    assert chunked[1].status == 400
    assert chunked[0] == reference[0]


quoted_values = st.binary(max_size=20).filter(lambda v: b'"' not in v and b"\\" not in v)


@given(name=quoted_values, filename=st.none() | quoted_values)
def test_the_fast_disposition_path_agrees_with_python_multipart(
    name: bytes, filename: bytes | None
) -> None:
    from python_multipart.multipart import parse_options_header

    disposition = b'form-data; name="' + name + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    kind, params = parse_options_header(disposition)
    assert kind == b"form-data"
    assert disposition_params(disposition) == (params[b"name"], params.get(b"filename"))


async def outcome(body: Body, **limits: Any) -> tuple[Result, str | None]:
    """What a caller reading everything sees: the parts and content, then the error."""
    out: Result = []
    try:
        async with parse_multipart(body, CONTENT_TYPE, **{**LIMITS, **limits}) as parts:
            async for part in parts:
                out.append((part.name, part.filename, part.content_type, b""))
                async for chunk in part:
                    name, filename, content_type, content = out[-1]
                    out[-1] = (name, filename, content_type, content + chunk)
    except UploadError as error:
        return out, f"{type(error).__name__}: {error}"
    return out, None


@settings(max_examples=150, deadline=None)
@given(
    specs=specs_strategy,
    sizes=chunkings,
    max_size=st.integers(1, 2000),
    max_part_size=st.integers(1, 300),
    max_parts=st.integers(1, 6),
)
async def test_limits_give_the_same_outcome_for_any_chunking(
    specs: list[Spec], sizes: list[int], max_size: int, max_part_size: int, max_parts: int
) -> None:
    data = encode(specs)
    limits = {"max_size": max_size, "max_part_size": max_part_size, "max_parts": max_parts}
    whole = await outcome(Body(data), **limits)
    assert await outcome(Body(data, sizes), **limits) == whole
    parts, error = whole
    too_large = (
        len(data) - len(b"\r\n") > max_size  # the CRLF after the closing boundary is not read
        or len(specs) > max_parts
        or any(len(spec.content) > max_part_size for spec in specs)
    )
    assert (error is not None) == too_large
    if error is None:
        assert parts == expected(specs)
    else:
        assert error.startswith("UploadTooLarge")
        assert all(len(content) <= max_part_size for *_, content in parts)


@pytest.mark.parametrize("size", [1, 13, 4096])
async def test_bodies_encoded_by_a_real_client_httpx(size: int) -> None:
    payload = bytes(range(256)) * 40 + f"\r\n--{BOUNDARY}".encode()[:-1]
    request = httpx.Request(
        "POST",
        "http://127.0.0.1/upload",
        data={"title": "café", "tags": ["a", "b"]},
        files=[
            ("doc", ("résumé 2024.pdf", payload, "application/pdf")),
            ("empty", ("empty.txt", b"", "text/plain")),
        ],
    )
    body = Body(request.read(), size)
    assert await collect(body, request.headers["content-type"]) == [
        ("title", None, None, "café".encode()),
        ("tags", None, None, b"a"),
        ("tags", None, None, b"b"),
        ("doc", "résumé 2024.pdf", "application/pdf", payload),
        ("empty", "empty.txt", "text/plain", b""),
    ]


async def test_the_body_is_pulled_only_as_the_consumer_reads() -> None:
    body = Body(encode([Spec("big", b"x" * 1_000_000, "big.bin")]), 4 * KIB)
    async with parse_multipart(body, CONTENT_TYPE, **LIMITS) as parts:
        part = await anext(parts)
        assert body.sent == 4 * KIB
        for _ in range(10):
            await anext(aiter(part))
        assert body.sent <= 12 * 4 * KIB
    assert body.closed


async def test_headers_are_kept_in_order_with_lower_case_names() -> None:
    specs = [
        Spec("doc", b"%PDF", "a.pdf", "application/pdf", [("X-Checksum", "abc"), ("X-Note", "é")])
    ]
    async with parse_multipart(Body(encode(specs)), CONTENT_TYPE, **LIMITS) as parts:
        part = await anext(parts)
        assert part.headers == [
            ("content-disposition", 'form-data; name="doc"; filename="a.pdf"'),
            ("content-type", "application/pdf"),
            ("x-checksum", "abc"),
            ("x-note", "é"),
        ]
        assert part.header("X-CHECKSUM") == "abc"
        assert part.header("missing") is None
        assert "a.pdf" in repr(part)
        assert await part.read() == b"%PDF"


async def test_unicode_filename_sent_raw_in_utf8() -> None:
    specs = [Spec("f", b"1", "résumé €.txt", "text/plain"), Spec("名前", b"2")]
    assert await collect(Body(encode(specs))) == expected(specs)


async def test_unicode_filename_star_wins_over_the_ascii_fallback() -> None:
    header = (
        b'Content-Disposition: form-data; name="f"; filename="rates.txt"; '
        b"filename*=UTF-8''%E2%82%AC%20rates.txt\r\n"
    )
    body = Body(raw_part(header, b"100") + closing())
    assert await collect(body) == [("f", "€ rates.txt", None, b"100")]


async def test_filename_star_alone_and_in_latin1() -> None:
    header = b"Content-Disposition: form-data; name=\"f\"; filename*=iso-8859-1'en'na%EFve.txt\r\n"
    assert await collect(Body(raw_part(header, b"") + closing())) == [("f", "naïve.txt", None, b"")]


@pytest.mark.parametrize(
    "value",
    [b"UTF-8''%FF%FE", b"no-quotes-here", b"klingon''abc"],
    ids=["bytes", "form", "charset"],
)
async def test_an_undecodable_filename_star_is_malformed(value: bytes) -> None:
    header = b'Content-Disposition: form-data; name="f"; filename*=' + value + b"\r\n"
    with pytest.raises(MalformedUpload, match=r"filename\*"):
        await collect(Body(raw_part(header, b"x") + closing()))


async def test_an_empty_form_has_no_parts() -> None:
    body = Body(closing())
    assert await collect(body) == []
    assert body.closed


async def test_quoted_boundary_bytes_content_type_and_leading_crlf() -> None:
    data = b"\r\n" + encode([Spec("a", b"1")], boundary="b o=u;nd")
    content_type = b'Multipart/Form-Data; boundary="b o=u;nd"; charset=utf-8'
    assert await collect(Body(data, 7), content_type) == [("a", None, None, b"1")]  # type: ignore[arg-type]


async def test_the_body_is_not_read_past_the_closing_boundary() -> None:
    data = encode([Spec("a", b"1")])
    body = Body(data + b"epilogue" * 1000, len(data))
    assert await collect(body) == [("a", None, None, b"1")]
    assert body.sent == len(data)
    assert body.closed


# -- reading order, skipping, closing ------------------------------------------------


async def test_unread_parts_are_skipped() -> None:
    specs = [Spec("a", b"A" * 200_000), Spec("b", b"B" * 10), Spec("c", b"C" * 100_000)]
    body = Body(encode(specs), 1000)
    seen = []
    async with parse_multipart(body, CONTENT_TYPE, **LIMITS) as parts:
        async for part in parts:
            if part.name == "b":
                seen.append(await part.read())
            elif part.name == "c":
                seen.append(await anext(aiter(part)))  # read one chunk, skip the rest
    assert seen[0] == b"B" * 10
    assert seen[1]
    assert set(seen[1]) == {ord("C")}
    assert body.fully_read


async def test_a_skipped_part_cannot_be_read_later_but_a_finished_one_is_just_empty() -> None:
    specs = [Spec("a", b"A" * 100), Spec("b", b"B"), Spec("c", b"C")]
    async with parse_multipart(Body(encode(specs), 10), CONTENT_TYPE, **LIMITS) as parts:
        a = await anext(parts)
        b = await anext(parts)
        with pytest.raises(RuntimeError, match="'a' was skipped"):
            await a.read()
        assert await b.read() == b"B"
        await anext(parts)
        assert await b.read() == b""


async def test_closing_early_closes_the_body() -> None:
    specs = [Spec("a", b"A" * 100_000), Spec("b", b"B" * 100_000)]
    body = Body(encode(specs), 1000)
    parts = parse_multipart(body, CONTENT_TYPE, **LIMITS)
    first = await anext(parts)
    assert await anext(aiter(first))
    await parts.aclose()
    assert body.closed
    assert not body.fully_read
    with pytest.raises(RuntimeError, match="closed before part 'a' was read"):
        await first.read()
    with pytest.raises(StopAsyncIteration):
        await anext(parts)
    await parts.aclose()  # closing twice is harmless


async def test_breaking_out_of_async_with_closes_the_body() -> None:
    body = Body(encode([Spec("a", b"1"), Spec("b", b"2")]), 1)
    async with parse_multipart(body, CONTENT_TYPE, **LIMITS) as parts:
        async for _part in parts:
            break
    assert body.closed
    assert not body.fully_read


async def test_an_error_from_the_body_propagates_and_closes_it() -> None:
    closed = []

    async def failing() -> AsyncIterator[bytes]:
        try:
            yield encode([Spec("a", b"1" * 100)])[:120]
            raise ConnectionResetError("client went away")
        finally:
            closed.append(True)

    parts = parse_multipart(failing(), CONTENT_TYPE, **LIMITS)
    part = await anext(parts)
    with pytest.raises(ConnectionResetError):
        await part.read()
    assert closed == [True]
    with pytest.raises(ConnectionResetError):  # the stream stays failed
        await anext(parts)


async def test_a_body_of_str_is_a_type_error() -> None:
    async def text() -> AsyncIterator[Any]:
        yield "--" + BOUNDARY

    with pytest.raises(TypeError, match="must yield bytes, not str"):
        await collect(text())  # type: ignore[arg-type]


async def test_bytearray_and_memoryview_chunks_are_accepted() -> None:
    data = encode([Spec("a", b"hello")])

    async def mixed() -> AsyncIterator[Any]:
        yield bytearray(data[:10])
        yield memoryview(data[10:])

    assert await collect(mixed()) == [("a", None, None, b"hello")]  # type: ignore[arg-type]


async def test_cancelling_a_reader_closes_the_body_and_leaves_no_task() -> None:
    gate = asyncio.Event()
    closed = []

    async def slow() -> AsyncIterator[bytes]:
        try:
            yield raw_part(b'Content-Disposition: form-data; name="a"\r\n', b"x")
            await gate.wait()
            yield closing()
        finally:
            closed.append(True)

    parts = parse_multipart(slow(), CONTENT_TYPE, **LIMITS)
    part = await anext(parts)

    async def read() -> bytes:
        return await part.read()

    task = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == [True]
    with pytest.raises(RuntimeError, match="interrupted"):
        await anext(parts)


async def test_two_tasks_reading_at_once_is_refused() -> None:
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield raw_part(b'Content-Disposition: form-data; name="a"\r\n', b"x")
        await gate.wait()
        yield closing()

    parts = parse_multipart(slow(), CONTENT_TYPE, **LIMITS)
    part = await anext(parts)
    reader = asyncio.create_task(part.read())
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="another task"):
        await anext(parts)
    gate.set()
    assert await reader == b"x"
    await parts.aclose()


# -- limits ---------------------------------------------------------------------------


async def test_a_body_over_max_size_is_refused_before_it_is_read() -> None:
    body = Body(encode([Spec("f", b"x" * 1_000_000, "f.bin")]), 4 * KIB)
    with pytest.raises(UploadTooLarge, match="larger than 100000 bytes") as info:
        await collect(body, max_size=100_000)
    assert info.value.status == 413
    assert body.sent < 110_000
    assert body.closed


async def test_a_part_over_max_part_size_gets_exactly_the_limit_then_the_error() -> None:
    specs = [Spec("ok", b"o" * 10_000), Spec("f", b"x" * 500_000, "f.bin"), Spec("late", b"")]
    body = Body(encode(specs), 4 * KIB)
    parts, error = await collect_until_error(body, max_part_size=10_000)
    assert isinstance(error, UploadTooLarge)
    assert error.status == 413
    assert "larger than 10000 bytes" in str(error)
    assert parts == [("ok", None, None, b"o" * 10_000), ("f", "f.bin", None, b"x" * 10_000)]
    assert body.sent < 30_000
    assert body.closed


async def test_a_skipped_part_counts_against_max_part_size() -> None:
    body = Body(encode([Spec("big", b"x" * 100_000), Spec("b", b"")]), 4 * KIB)
    parts = parse_multipart(body, CONTENT_TYPE, **{**LIMITS, "max_part_size": 1000})
    assert (await anext(parts)).name == "big"
    with pytest.raises(UploadTooLarge):
        await anext(parts)
    assert not body.fully_read
    assert body.closed


async def test_too_many_parts_are_refused_as_the_extra_part_begins() -> None:
    specs = [Spec(f"field{i}", b"v") for i in range(10_000)]
    body = Body(encode(specs), 512)
    parts, error = await collect_until_error(body, max_parts=5)
    assert isinstance(error, UploadTooLarge)
    assert "more than 5 parts" in str(error)
    assert [name for name, *_ in parts] == [f"field{i}" for i in range(5)]
    assert body.sent < 2048
    assert body.closed


async def test_exactly_at_every_limit_is_accepted() -> None:
    specs = [Spec("a", b"x" * 100), Spec("b", b"y" * 100)]
    data = encode(specs)
    result = await collect(Body(data, 7), max_size=len(data), max_part_size=100, max_parts=2)
    assert result == expected(specs)
    # max_size counts the message up to the end of its closing boundary, not what follows
    assert await collect(Body(data, 7), max_size=len(data) - 2) == expected(specs)
    with pytest.raises(UploadTooLarge):
        await collect(Body(data, 7), max_size=len(data) - 3)


@pytest.mark.parametrize("name", ["max_size", "max_part_size", "max_parts"])
@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (None, TypeError), (True, TypeError)],
)
async def test_limits_are_validated_at_the_call(name: str, value: object, error: type) -> None:
    body = Body(encode([Spec("a", b"1")]))
    with pytest.raises(error, match=name):
        parse_multipart(body, CONTENT_TYPE, **{**LIMITS, name: value})
    assert body.sent == 0


# -- content types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/json", "multipart/mixed; boundary=x", "text/plain"],
)
async def test_a_body_that_is_not_form_data_is_415(content_type: str | None) -> None:
    body = Body(encode([Spec("a", b"1")]))
    with pytest.raises(UnsupportedMediaType, match="expected multipart/form-data") as info:
        parse_multipart(body, content_type, **LIMITS)
    assert info.value.status == 415
    assert body.sent == 0


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; charset=x"],
)
async def test_no_boundary_is_malformed(content_type: str) -> None:
    with pytest.raises(MalformedUpload, match="no boundary") as info:
        parse_multipart(Body(b""), content_type, **LIMITS)
    assert info.value.status == 400


async def test_an_overlong_boundary_is_malformed() -> None:
    with pytest.raises(MalformedUpload, match="boundary"):
        parse_multipart(Body(b""), "multipart/form-data; boundary=" + "b" * 300, **LIMITS)


async def test_allowed_types_check_files_but_not_fields() -> None:
    specs = [
        Spec("caption", b"hi"),
        Spec("a", b"1", "a.png", "image/png"),
        Spec("b", b"2", "b.jpg", "IMAGE/JPEG; q=1"),
        Spec("c", b"3", "c.pdf", "application/pdf"),
    ]
    assert (
        len(await collect(Body(encode(specs)), allowed_types=["image/*", "application/pdf"])) == 4
    )
    parts, error = await collect_until_error(Body(encode(specs)), allowed_types=["image/*"])
    assert isinstance(error, UnsupportedMediaType)
    assert error.status == 415
    assert "'c' has type 'application/pdf'" in str(error)
    assert [name for name, *_ in parts] == ["caption", "a", "b"]


async def test_a_file_without_content_type_counts_as_octet_stream() -> None:
    specs = [Spec("f", b"1", "f")]
    with pytest.raises(UnsupportedMediaType, match="application/octet-stream"):
        await collect(Body(encode(specs)), allowed_types=["text/plain"])
    assert len(await collect(Body(encode(specs)), allowed_types=["*/*"])) == 1


async def test_empty_allowed_types_refuse_every_file() -> None:
    assert await collect(Body(encode([Spec("a", b"1")])), allowed_types=()) == [
        ("a", None, None, b"1")
    ]
    with pytest.raises(UnsupportedMediaType, match="no files are accepted"):
        await collect(Body(encode([Spec("f", b"1", "f.txt", "text/plain")])), allowed_types=())


@pytest.mark.parametrize("pattern", ["image", "image/", "*/png", "image/png/x", "", "ima ge/png"])
async def test_bad_allowed_type_patterns_are_refused_at_the_call(pattern: str) -> None:
    with pytest.raises(ValueError, match="allowed_types"):
        parse_multipart(Body(b""), CONTENT_TYPE, **LIMITS, allowed_types=[pattern])


async def test_allowed_types_as_a_single_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="single string"):
        parse_multipart(Body(b""), CONTENT_TYPE, **LIMITS, allowed_types="image/png")


# -- malformed bodies ---------------------------------------------------------------------

DISPOSITION = b'Content-Disposition: form-data; name="a"\r\n'


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"preamble\r\n" + encode([Spec("a", b"1")]), "malformed multipart body"),
        (b"--wrong-boundary\r\n" + DISPOSITION + b"\r\n1\r\n", "malformed multipart body"),
        (raw_part(b"Content Disposition: x\r\n", b"1") + closing(), "malformed"),
        (raw_part(b": empty name\r\n", b"1") + closing(), "malformed"),
        (raw_part(b"Content-Type: text/plain\r\n", b"1") + closing(), "no Content-Disposition"),
        (raw_part(b"Content-Disposition: attachment; name=a\r\n", b"1") + closing(), "'form-data'"),
        (
            raw_part(b'Content-Disposition: form-data; filename="x"\r\n', b"1") + closing(),
            "no name",
        ),
        (raw_part(b"X: " + b"v" * 70_000 + b"\r\n" + DISPOSITION, b"1") + closing(), "header"),
    ],
    ids=[
        "preamble",
        "boundary",
        "header-name",
        "empty-header",
        "no-disposition",
        "not-form-data",
        "no-name",
        "huge-header",
    ],
)
async def test_broken_framing_and_headers_are_malformed(data: bytes, message: str) -> None:
    with pytest.raises(MalformedUpload, match=message) as info:
        await collect(Body(data, 100))
    assert info.value.status == 400


@pytest.mark.parametrize(
    "data",
    [
        b"",
        f"--{BOUNDARY}".encode(),
        f"--{BOUNDARY}\r\n".encode() + DISPOSITION,
        raw_part(DISPOSITION, b"content without end")[:-2],
        raw_part(DISPOSITION, b"1"),
        raw_part(DISPOSITION, b"1") + f"--{BOUNDARY}-".encode(),
    ],
    ids=["empty", "boundary-only", "mid-headers", "mid-content", "no-closing", "half-closing"],
)
async def test_a_truncated_body_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedUpload, match="truncated") as info:
        await collect(Body(data, 5))
    assert info.value.status == 400


# -- memory ---------------------------------------------------------------------------------


class ProbeBody:
    """A body of one `size`-byte file part, generated chunk by chunk (never whole), that
    records the most bytes it had handed out but the consumer had not yet received."""

    def __init__(self, size: int, chunk: int) -> None:
        self.head = raw_part(DISPOSITION, b"")[: -len(b"\r\n")]
        self.tail = b"\r\n" + closing()
        self.size = size
        self.block = b"z" * chunk
        self.sent = 0
        self.received = 0
        self.most_in_flight = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield self.head
        left = self.size
        while left:
            block = self.block if left >= len(self.block) else self.block[:left]
            left -= len(block)
            self.sent += len(block)
            self.most_in_flight = max(self.most_in_flight, self.sent - self.received)
            yield block
        yield self.tail


@pytest.mark.parametrize("chunk", [64 * KIB, 5 * 1024 * KIB], ids=["64KiB", "5MiB"])
async def test_a_50_mb_part_streams_with_bounded_memory(chunk: int) -> None:
    size = 50 * 1024 * KIB
    body = ProbeBody(size, chunk)
    largest = 0
    tracemalloc.start()
    try:
        async with parse_multipart(
            body, CONTENT_TYPE, max_size=size * 2, max_part_size=size, max_parts=1
        ) as parts:
            async for part in parts:
                async for piece in part:
                    body.received += len(piece)
                    largest = max(largest, len(piece))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert body.received == size
    # at most one body chunk is in flight between the source and the consumer,
    assert body.most_in_flight <= chunk
    # handed over in pieces of at most 64 KiB, whatever the chunk size,
    assert largest <= 64 * KIB
    # and the parser never copies more than a couple of 64 KiB pieces at once.
    assert peak < 512 * KIB


# -- packaging ---------------------------------------------------------------------------------


def test_public_names() -> None:
    for name in [
        "parse_multipart",
        "Part",
        "UploadError",
        "UploadTooLarge",
        "UnsupportedMediaType",
        "MalformedUpload",
    ]:
        assert name in streamfx.__all__
    assert streamfx.Part is Part
    assert (UploadTooLarge.status, UnsupportedMediaType.status, MalformedUpload.status) == (
        413,
        415,
        400,
    )


def test_import_works_without_python_multipart() -> None:
    script = (
        "import sys\n"
        "sys.modules['python_multipart'] = None\n"
        "import streamfx\n"
        "try:\n"
        "    streamfx.parse_multipart(None, 'multipart/form-data; boundary=x', max_size=1,"
        " max_part_size=1, max_parts=1)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "pip install 'streamfx[multipart]'" in result.stdout


# -- metrics -------------------------------------------------------------------------


@pytest.fixture
def metrics() -> Iterator[InMemoryMetrics]:
    """The process-wide hook, recording, for the length of one test."""
    hook = InMemoryMetrics()
    previous = set_metrics(hook)
    try:
        yield hook
    finally:
        set_metrics(previous)


def upload_figures(hook: InMemoryMetrics, name: str = "") -> dict[str, object]:
    key = ("upload", name)
    return {
        "opened": hook.opened[key],
        "active": hook.active[key],
        "parts": hook.items[key],
        "bytes": hook.bytes[key],
        "closed": len(hook.durations.get(key, [])),
        "outcomes": {o: n for (k, nm, o), n in hook.outcomes.items() if (k, nm) == key},
    }


@pytest.mark.parametrize("size", [1, 100, 64 * KIB])
async def test_a_complete_upload_reports_its_parts_and_body_bytes_once(
    metrics: InMemoryMetrics, size: int
) -> None:
    specs = [Spec("a", b"x" * 300), Spec("b", b"y" * 5000, "b.bin"), Spec("c", b"")]
    body = Body(encode(specs), size)
    assert await collect(body, name="/upload") == expected(specs)
    assert upload_figures(metrics, "/upload") == {
        "opened": 1,
        "active": 0,
        "parts": 3,
        "bytes": body.sent,  # every body byte read, framing included
        "closed": 1,
        "outcomes": {"completed": 1},
    }
    assert body.sent >= len(encode(specs)) - 2  # at most the final CRLF is left unread
    assert metrics.total("opened") == 1  # reported under its kind and name only


async def test_an_upload_refused_midway_reports_one_error(metrics: InMemoryMetrics) -> None:
    body = Body(encode([Spec("a", b"1"), Spec("b", b"2"), Spec("c", b"3")]), 10)
    _, error = await collect_until_error(body, max_parts=2)
    assert isinstance(error, UploadTooLarge)
    figures = upload_figures(metrics)
    assert figures["outcomes"] == {"error": 1}
    assert (figures["opened"], figures["active"], figures["closed"]) == (1, 0, 1)
    assert figures["parts"] == 2  # the third was refused as it began


async def test_a_failing_body_reports_an_error_once(metrics: InMemoryMetrics) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield encode([Spec("a", b"1" * 100)])[:120]
        raise ConnectionResetError("client went away")

    parts = parse_multipart(failing(), CONTENT_TYPE, **LIMITS)
    part = await anext(parts)
    with pytest.raises(ConnectionResetError):
        await part.read()
    with pytest.raises(ConnectionResetError):
        await anext(parts)
    await parts.aclose()
    assert upload_figures(metrics)["outcomes"] == {"error": 1}
    assert upload_figures(metrics)["bytes"] == 120


async def test_stopping_early_reports_closed(metrics: InMemoryMetrics) -> None:
    body = Body(encode([Spec("a", b"1"), Spec("b", b"2")]), 1)
    async with parse_multipart(body, CONTENT_TYPE, **LIMITS) as parts:
        async for _part in parts:
            break
    figures = upload_figures(metrics)
    assert figures["outcomes"] == {"closed": 1}
    assert (figures["opened"], figures["active"], figures["parts"]) == (1, 0, 1)


async def test_a_cancelled_reader_reports_closed(metrics: InMemoryMetrics) -> None:
    gate = asyncio.Event()

    waiting = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield raw_part(b'Content-Disposition: form-data; name="a"\r\n', b"x")
        waiting.set()
        await gate.wait()
        yield closing()

    parts = parse_multipart(slow(), CONTENT_TYPE, **LIMITS)
    part = await anext(parts)
    task = asyncio.create_task(part.read())
    await waiting.wait()  # the reader is blocked on the body
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await parts.aclose()
    assert upload_figures(metrics)["outcomes"] == {"closed": 1}
    assert upload_figures(metrics)["active"] == 0


async def test_an_upload_closed_before_it_was_read_reports_nothing(
    metrics: InMemoryMetrics,
) -> None:
    parts = parse_multipart(Body(encode([Spec("a", b"1")])), CONTENT_TYPE, **LIMITS)
    await parts.aclose()
    assert metrics == InMemoryMetrics()


async def test_metrics_argument_takes_the_place_of_the_process_wide_hook(
    metrics: InMemoryMetrics,
) -> None:
    own = InMemoryMetrics()
    await collect(Body(encode([Spec("a", b"1")])), name="n", metrics=own)
    assert metrics == InMemoryMetrics()
    assert upload_figures(own, "n")["outcomes"] == {"completed": 1}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=specs_strategy, sizes=chunkings)
async def test_any_chunking_reports_the_same_figures(specs: list[Spec], sizes: list[int]) -> None:
    hook = InMemoryMetrics()
    body = Body(encode(specs), sizes)
    await collect(body, metrics=hook)
    assert upload_figures(hook) == {
        "opened": 1,
        "active": 0,
        "parts": len(specs),
        "bytes": body.sent,
        "closed": 1,
        "outcomes": {"completed": 1},
    }
