"""Tests for the boundary scanner (streamfx/_upload/framing.py): the same parts as
python-multipart on any body it accepts, the browser fast path equal to the general
path, the preamble, the header-line rules and limits, the request's boundary."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

import streamfx._upload.framing
from streamfx import MalformedUpload, UnsupportedMediaType, UploadTooLarge, parse_multipart
from streamfx._upload.part import decode_text
from tests._upload_bodies import (
    BOUNDARY,
    CONTENT_TYPE,
    DISPOSITION,
    LIMITS,
    Body,
    Spec,
    closing,
    collect,
    encode,
    outcome,
    raw_part,
)

Parsed = list[tuple[str | None, str | None, str | None, bytes]]


def text(raw: bytes | None) -> str | None:
    return None if raw is None else decode_text(raw)


# -- the same parts as python-multipart -----------------------------------------------------


def python_multipart(data: bytes, sizes: list[int]) -> Parsed | None:
    """The parts python-multipart finds, as (name, filename, content type, content), or
    None when it refuses the body or the body ends before the closing boundary."""
    parts: Parsed = []
    headers: dict[bytes, bytes] = {}
    field = bytearray()
    value = bytearray()
    content = bytearray()
    ended = False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        content.extend(data[start:end])

    def on_part_end() -> None:
        _, params = parse_options_header(headers.get(b"content-disposition", b""))
        content_type = headers.get(b"content-type")
        # RFC 9110 5.5: a value has no leading or trailing whitespace (SP or HTAB);
        # python-multipart skips only the spaces after the colon, and leaves a tab
        if content_type is not None:
            content_type = content_type.strip(b" \t")
        name, filename = params.get(b"name"), params.get(b"filename")
        parts.append((text(name), text(filename), text(content_type), bytes(content)))
        headers.clear()
        content.clear()

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(
        BOUNDARY,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )
    try:
        offset = index = 0
        while offset < len(data) and not ended:
            size = sizes[index % len(sizes)]
            parser.write(data[offset : offset + size])
            offset += size
            index += 1
    except Exception:
        return None
    return parts if ended else None


async def streamfx_parts(data: bytes, sizes: list[int]) -> Parsed | None:
    """The same for streamfx (the raw file name, as python-multipart gives it)."""
    parts: Parsed = []
    try:
        async with parse_multipart(
            Body(data, sizes), CONTENT_TYPE, **LIMITS, max_header_size=4096
        ) as stream:
            async for part in stream:
                parts.append((part.name, part.raw_filename, part.content_type, await part.read()))
    except MalformedUpload:
        return None
    return parts


names = st.text(st.characters(codec="ascii", exclude_characters='"\\\r\n\x00'), max_size=8)
specs = st.lists(
    st.builds(
        Spec,
        name=names,
        content=st.binary(max_size=40) | st.sampled_from([b"\r\n--", b"\r\n", b"--"]),
        filename=st.none() | names,
        content_type=st.none() | st.sampled_from(["text/plain", "image/png"]),
    ),
    max_size=4,
)
noise = st.sampled_from(
    [b"\r", b"\n", b"\r\n", b"--", b"-", b'"', b";", b":", b" ", b"\t", b"\x00", b"\\",
     b"\r\n\r\n", f"\r\n--{BOUNDARY}".encode(), f"--{BOUNDARY}--".encode(), b"filename=x",
     b"Content-Type: a/b\r\n", b"X-Y: z\r\n"]
)  # fmt: skip


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    data = encode(draw(specs))
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.integers(0, len(data)))
        end = draw(st.integers(start, min(len(data), start + 4)))
        data = data[:start] + draw(noise | st.binary(max_size=2)) + data[end:]
    return data


chunkings = st.lists(st.integers(1, 50), min_size=1, max_size=5)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_bodies(), sizes=chunkings)
async def test_whatever_streamfx_accepts_python_multipart_reads_the_same(
    data: bytes, sizes: list[int]
) -> None:
    """Differential: on well-formed bodies and on bodies with a few bytes changed
    anywhere, a body streamfx accepts is one python-multipart accepts, with the same
    parts, names, file names, content types and content, for any chunking of either;
    the one exception is a preamble of text (RFC 2046 allows it, streamfx skips it,
    python-multipart skips only CR and LF and refuses the rest)."""
    ours = await streamfx_parts(data, sizes)
    if ours is not None:
        theirs = python_multipart(data, sizes)
        if theirs is None:
            assert not re.match(rb"[\r\n]*--" + re.escape(BOUNDARY.encode()), data)
            assert ours == python_multipart(
                data[data.index(b"\r\n--" + BOUNDARY.encode()) :], sizes
            )
        else:
            assert ours == theirs


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=specs, sizes=chunkings)
async def test_well_formed_bodies_are_accepted_like_python_multipart(
    parts: list[Spec], sizes: list[int]
) -> None:
    data = encode(parts)
    ours = await streamfx_parts(data, sizes)
    assert ours is not None
    assert ours == python_multipart(data, sizes)


# -- the browser fast path equals the general path ----------------------------------------

header_pieces = st.sampled_from(
    [b'Content-Disposition: form-data; name="a"', b'; filename="b.png"', b"\r\n",
     b"Content-Type: image/png", b"Content-Type: text/plain; charset=utf-8", b'"', b"\\",
     b"\t", b" ", b";", b"\xc3\xa9", b"filename*=utf-8''x", b"X-A: b", b"content-type: a/b",
     b"Content-Disposition: form-data", b'; name="c"', b"\r\n\r\n"]
)  # fmt: skip


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    block = b'Content-Disposition: form-data; name="' + draw(names).encode() + b'"'
    if draw(st.booleans()):
        block += b'; filename="' + draw(names).encode() + b'"'
    if draw(st.booleans()):
        block += b"\r\nContent-Type: " + draw(st.sampled_from([b"image/png", b"a/b", b"x"]))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(block)))
        block = block[:at] + draw(header_pieces) + block[at:]
    return block + b"\r\n\r\n"


async def described(block: bytes, limits: dict[str, Any]) -> object:
    body = Body(f"--{BOUNDARY}\r\n".encode() + block + b"x\r\n" + closing())
    try:
        async with parse_multipart(body, CONTENT_TYPE, **{**LIMITS, **limits}) as parts:
            part = await anext(parts)
            return (part.name, part.raw_filename, part.content_type, part.headers)
    except (MalformedUpload, UploadTooLarge, UnsupportedMediaType) as error:
        return type(error), error.detail


@settings(max_examples=400, deadline=None)
@given(
    block=header_blocks(),
    limits=st.fixed_dictionaries(
        {
            "max_headers": st.integers(1, 3),
            "max_header_size": st.integers(40, 120),
            "allowed_types": st.none() | st.just(["image/*"]),
        }
    ),
)
async def test_the_browser_fast_path_gives_what_the_general_path_gives(
    block: bytes, limits: dict[str, Any]
) -> None:
    fast = await described(block, limits)
    original = streamfx._upload.framing._BROWSER_HEADERS
    streamfx._upload.framing._BROWSER_HEADERS = re.compile(b"(?!)")  # never matches
    try:
        general = await described(block, limits)
    finally:
        streamfx._upload.framing._BROWSER_HEADERS = original
    assert fast == general


# -- framing --------------------------------------------------------------------------------


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


@pytest.mark.parametrize("size", [0, 2, 3, 1000, 1024])
async def test_a_short_preamble_is_skipped(size: int) -> None:
    preamble = b"x" * (size - 2) + b"\r\n" if size else b""
    data = preamble + encode([Spec("a", b"1")])
    assert await collect(Body(data, 3)) == [("a", None, None, b"1")]


@pytest.mark.parametrize("preamble", [b"\r", b"\n", b"\n\n", b"x", b"text\r\nmore "])
async def test_a_boundary_mid_line_in_the_preamble_is_refused(preamble: bytes) -> None:
    """python-multipart takes ``\\r--boundary`` for the first boundary; RFC 2046 for
    preamble text. Reading it either way would disagree with one of them."""
    with pytest.raises(MalformedUpload, match="preamble, mid-line"):
        await collect(Body(preamble + encode([Spec("a", b"1")]), 3))


async def test_a_long_preamble_is_refused_as_soon_as_it_passes_the_limit() -> None:
    body = Body(b"\r\n" * (5 << 20) + encode([Spec("a", b"1")]), 64 << 10)
    _, error = await outcome(body, max_preamble_size=4096)
    assert isinstance(error, UploadTooLarge)
    assert error.detail == (
        "the preamble before the first boundary is longer than 4096 bytes (max_preamble_size=4096)"
    )
    assert body.sent == 64 << 10


# -- header lines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        b"Content Disposition: x\r\n",
        b": empty name\r\n",
        b"No colon here\r\n",
        b"Content-Disposition : form-data; name=a\r\n",
        DISPOSITION + b" folded: line\r\n",
        b'Content-Disposition: form-data; name="a\nb"\r\n',
        b'Content-Disposition: form-data; name="a"\rX-Y: 1\r\n',
        b'Content-Disposition: form-data; name="a\x00"\r\n',
    ],
    ids=["space-in-name", "no-name", "no-colon", "space-before-colon", "folded", "bare-lf",
         "bare-cr", "nul"],
)  # fmt: skip
async def test_a_header_line_that_breaks_the_rules_is_malformed(headers: bytes) -> None:
    with pytest.raises(MalformedUpload) as info:
        await collect(Body(raw_part(headers, b"1") + closing(), 100))
    assert info.value.status_code == 400


@pytest.mark.parametrize("chunk", [7, 100, 64 << 10])
async def test_ten_thousand_header_lines_are_refused_at_the_ninth(chunk: int) -> None:
    data = raw_part(DISPOSITION + b"X-Flood: 1\r\n" * 10_000, b"1") + closing()
    body = Body(data, chunk)
    _, error = await outcome(body)
    assert isinstance(error, UploadTooLarge)
    assert error.detail == "a part has more than 8 header lines (max_headers=8)"
    assert body.sent <= len(BOUNDARY) + 4 + len(DISPOSITION) + 8 * 12 + chunk


@pytest.mark.parametrize("crlf", [True, False], ids=["line", "no-end"])
async def test_a_long_header_line_is_refused_once_it_passes_the_limit(crlf: bool) -> None:
    line = b"X-Long: " + b"v" * (1 << 20) + (b"\r\n" if crlf else b"")
    body = Body(raw_part(DISPOSITION + line, b"1") + closing(), 1000)
    _, error = await outcome(body, max_header_size=1000)
    assert isinstance(error, UploadTooLarge)
    assert error.detail == "a part's header line is longer than 1000 bytes (max_header_size=1000)"
    assert body.sent <= 3000


async def test_header_lines_exactly_at_the_limits_are_accepted() -> None:
    line = b"X-A: " + b"v" * 95  # 100 bytes
    headers = DISPOSITION + (line + b"\r\n") * 3
    for size in (1, 2, 3, 50, 1000):
        body = Body(raw_part(headers, b"1") + closing(), size)
        assert await collect(body, max_headers=4, max_header_size=100) == [("a", None, None, b"1")]


@pytest.mark.parametrize(
    "data",
    [
        b"--wrong-boundary\r\n" + DISPOSITION + b"\r\n1\r\n",
        f"--{BOUNDARY}X\r\n".encode() + DISPOSITION + b"\r\n1\r\n" + closing(),
        raw_part(DISPOSITION, b"1\r\n--" + BOUNDARY.encode() + b"X") + closing(),
    ],
    ids=["never-found", "first-boundary-followed-by-text", "boundary-inside-content"],
)
async def test_a_boundary_that_is_not_a_boundary_line_is_malformed_or_never_found(
    data: bytes,
) -> None:
    _, error = await outcome(Body(data, 9), max_preamble_size=10_000)
    assert isinstance(error, MalformedUpload)


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
    assert info.value.status_code == 400


# -- the request's Content-Type and boundary ----------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/json", "multipart/mixed; boundary=x", "text/plain", "a b c"],
)
async def test_a_body_that_is_not_form_data_is_415(content_type: str | None) -> None:
    body = Body(encode([Spec("a", b"1")]))
    with pytest.raises(UnsupportedMediaType, match="expected multipart/form-data") as info:
        parse_multipart(body, content_type, **LIMITS)
    assert info.value.status_code == 415
    assert body.sent == 0


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("multipart/form-data", "no boundary"),
        ("multipart/form-data; boundary=", "not a list of name=value parameters"),
        ('multipart/form-data; boundary=""', "no boundary"),
        ("multipart/form-data; charset=x", "no boundary"),
    ],
)
async def test_no_boundary_is_malformed(content_type: str, message: str) -> None:
    with pytest.raises(MalformedUpload, match=message) as info:
        parse_multipart(Body(b""), content_type, **LIMITS)
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    ("boundary", "accepted"),
    [("b" * 70, True), ("b" * 71, False), ('"' + "b" * 70 + '"', True), ("b" * 300, False)],
)
async def test_a_boundary_is_at_most_70_characters(boundary: str, accepted: bool) -> None:
    content_type = "multipart/form-data; boundary=" + boundary
    if accepted:
        data = encode([Spec("a", b"1")], boundary=boundary.strip('"'))
        assert await collect(Body(data), content_type) == [("a", None, None, b"1")]
    else:
        with pytest.raises(MalformedUpload, match="1 to 70 printable ASCII"):
            parse_multipart(Body(b""), content_type, **LIMITS)


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data; boundary=€",  # issue 15, item 1: raised UnicodeEncodeError
        "multipart/form-data; boundary=\udc80abc",  # what surrogateescape decoding gives
        "multipart/form-data; boundary=é",
        b"multipart/form-data; boundary=\xe9",
        "multipart/form-data; boundary=a\x01b",
        'multipart/form-data; boundary="unterminated',
        "multipart/form-data; boundary=a; boundary=b",
    ],
)
async def test_an_unusable_boundary_is_malformed_never_a_unicode_error(
    content_type: str | bytes,
) -> None:
    with pytest.raises(MalformedUpload) as info:
        parse_multipart(Body(b""), content_type, **LIMITS)
    assert info.value.status_code == 400
