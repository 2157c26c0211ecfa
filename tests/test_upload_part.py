"""Tests for `Part` and its header rules (streamfx/_upload/part.py): the two filename
smuggling exploits of issue 14 (items 1 and 2), ``filename*`` ignored, `Part.filename`
cleaned to a base name, header decoding, and ``allowed_types``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx import MalformedUpload, UnsupportedMediaType, parse_multipart
from streamfx._upload.part import clean_filename
from tests._upload_bodies import (
    CONTENT_TYPE,
    LIMITS,
    Body,
    Spec,
    closing,
    collect,
    collect_until_error,
    encode,
    expected,
    raw_part,
)


async def first_part(
    disposition: bytes, content_type: bytes | None = None, **limits: object
) -> tuple[str, str | None, str | None]:
    """Name, filename and raw filename of a one-part body with these headers."""
    headers = b"Content-Disposition: " + disposition + b"\r\n"
    if content_type is not None:
        headers += b"Content-Type: " + content_type + b"\r\n"
    body = Body(raw_part(headers, b"\x89PNG") + closing())
    async with parse_multipart(body, CONTENT_TYPE, **{**LIMITS, **limits}) as parts:
        part = await anext(parts)
        return part.name, part.filename, part.raw_filename


# -- issue 14, item 1: a filename invented from inside a quoted value --------------------

SMUGGLED = b"form-data; name=\"a; filename*=utf-8''evil.php\""


async def test_a_filename_star_inside_a_quoted_name_is_part_of_the_name() -> None:
    assert await first_part(SMUGGLED) == ("a; filename*=utf-8''evil.php", None, None)


async def test_a_field_with_a_smuggled_filename_is_not_refused_as_a_file() -> None:
    result = await first_part(SMUGGLED, allowed_types=["image/*"])
    assert result[1] is None  # a field: allowed_types do not apply


def test_the_peers_read_the_smuggling_header_the_same_way() -> None:
    from aiohttp.multipart import parse_content_disposition
    from python_multipart.multipart import parse_options_header
    from werkzeug.http import parse_options_header as werkzeug_options

    text = SMUGGLED.decode()
    name = "a; filename*=utf-8''evil.php"
    assert parse_options_header(SMUGGLED)[1] == {b"name": name.encode()}  # and Starlette
    assert werkzeug_options(text)[1] == {"name": name}
    assert parse_content_disposition(text)[1] == {"name": name}


# -- issue 14, item 2: filename* wins and is percent-decoded --------------------------------

TRAVERSAL = (
    b'form-data; name="f"; filename="a.png"; filename*=utf-8\'\'..%2F..%2Fetc%2Fpasswd%00.png'
)


async def test_filename_star_is_ignored_and_passes_no_path() -> None:
    result = await first_part(TRAVERSAL, b"image/png", allowed_types=["image/*"])
    assert result == ("f", "a.png", "a.png")


def test_python_multipart_ignores_filename_star_too() -> None:
    from python_multipart.multipart import parse_options_header

    assert parse_options_header(TRAVERSAL)[1] == {b"name": b"f", b"filename": b"a.png"}


@pytest.mark.parametrize(
    "value",
    [
        b"UTF-8''%E2%82%AC%20rates.txt",
        b"undefined''%41",  # issue 15, item 2: raised UnicodeError
        b"UTF-8''%FF%FE",
        b"klingon''abc",
        b"no-quotes-here",
        b'"quoted"',
    ],
)
async def test_filename_star_alone_makes_no_file_and_never_fails(value: bytes) -> None:
    disposition = b'form-data; name="f"; filename*=' + value
    assert await first_part(disposition) == ("f", None, None)
    with_plain = disposition + b'; filename="plain.txt"'
    assert await first_part(with_plain) == ("f", "plain.txt", "plain.txt")


async def test_name_star_is_ignored() -> None:
    assert await first_part(b"form-data; name=\"a\"; name*=utf-8''b") == ("a", None, None)
    with pytest.raises(MalformedUpload, match="no name"):
        await first_part(b"form-data; name*=utf-8''b")


# -- Part.filename: a base name, no separator, no control character ----------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("C:\\Users\\me\\photo.png", "photo.png"),
        ("/abs/path/", ""),
        ("..", ""),
        ("dir/..", ""),
        ("evil.php\x00.png", "evil.php_.png"),
        ("a\tb\x7fc\x85d", "a_b_c_d"),
        ("invoice\u202egpj.exe", "invoice_gpj.exe"),  # right-to-left override
        ("line\u2028break", "line_break"),
        ("  spaced name.txt  ", "spaced name.txt"),
        ("résumé €.txt", "résumé €.txt"),
        ("", ""),
    ],
)
def test_clean_filename(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean


@given(st.text())
def test_a_clean_filename_has_no_separator_or_control_character(raw: str) -> None:
    clean = clean_filename(raw)
    assert "/" not in clean and "\\" not in clean
    assert clean.isprintable()  # no NUL, no control, format or separator character
    assert clean not in (".", "..")
    assert clean_filename(clean) == clean


async def test_the_raw_filename_stays_available() -> None:
    disposition = b'form-data; name="f"; filename="../up/\xe2\x82\xac.png"'
    assert await first_part(disposition) == ("f", "€.png", "../up/€.png")


# -- headers -------------------------------------------------------------------------------


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
    assert error.status_code == 415
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


async def test_latin1_header_text_is_read_as_latin1() -> None:
    disposition = b'form-data; name="caf\xe9"; filename="na\xefve.txt"'
    assert await first_part(disposition) == ("café", "naïve.txt", "naïve.txt")


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (b"Content-Type: text/plain\r\n", "no Content-Disposition"),
        (b"Content-Disposition: attachment; name=a\r\n", "'attachment', not 'form-data'"),
        (b'Content-Disposition: form-data; filename="x"\r\n', "no name"),
        (b'Content-Disposition: form-data; name="a"; name="b"\r\n', "twice"),
        (b'Content-Disposition: form-data; name="a"; filename="x"; FILENAME="y"\r\n', "twice"),
        (
            b'Content-Disposition: form-data; name="a"\r\n'
            b'Content-Disposition: form-data; name="b"\r\n',
            "two Content-Disposition",
        ),
        (
            b'Content-Disposition: form-data; name="a"\r\n'
            b"Content-Type: a/b\r\nContent-Type: c/d\r\n",
            "two Content-Type",
        ),
        (b'Content-Disposition: form-data; name="a\r\n', "not a list"),
    ],
)
async def test_ambiguous_or_incomplete_part_headers_are_refused(
    headers: bytes, message: str
) -> None:
    with pytest.raises(MalformedUpload, match=message) as info:
        await collect(Body(raw_part(headers, b"1") + closing()))
    assert info.value.status_code == 400
