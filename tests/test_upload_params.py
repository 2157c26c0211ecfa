"""Tests for the header-parameter grammar (streamfx/_upload/params.py): one reading of a
``Content-Disposition``, the same as python-multipart's (hence Starlette's and FastAPI's)
wherever streamfx accepts the header, refused wherever a reading is in doubt."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from python_multipart.multipart import parse_options_header

from streamfx import MalformedUpload
from streamfx._upload.params import parse_params


def peer(value: bytes) -> tuple[bytes | None, bytes | None]:
    """python-multipart's name and filename (it drops every starred parameter, >= 0.0.30)."""
    _, params = parse_options_header(value)
    return params.get(b"name"), params.get(b"filename")


def ours(value: bytes) -> tuple[bytes | None, bytes | None] | None:
    """streamfx's name and filename, or None when it refuses the header. python-multipart
    keeps only the last path component of a Windows-looking file name (IE6 sent full
    paths); `Part.filename` goes further, so the raw value is compared the same way."""
    try:
        _, params = parse_params(value, "the header")
    except MalformedUpload:
        return None
    filename = params.get(b"filename")
    if filename is not None and (filename[1:3] == b":\\" or filename[:2] == b"\\\\"):
        filename = filename.split(b"\\")[-1]
    return params.get(b"name"), filename


# -- well-formed headers: always accepted, always python-multipart's reading ----------------

tokens = st.text("abcxyzABC019!#$%&'*+-.^_`|~", min_size=1, max_size=8).map(str.encode)
quoted_pieces = st.sampled_from(
    [b"a", b" ", b";", b"=", b"\t", b"filename*=utf-8''evil.php", b"\\\"", b"\\\\", b"\\x",
     b"/", b"..", b"\xe2\x82\xac", b"%2F", b"'", b"name=", b"*"]
)  # fmt: skip
quoted = st.lists(quoted_pieces, max_size=8).map(b"".join).filter(lambda v: not v.endswith(b"\\"))
ows = st.sampled_from([b"", b" ", b"\t", b"  "])
keys = st.sampled_from(
    [b"name", b"filename", b"NAME", b"FileName", b"name*", b"filename*", b"filename*0", b"x-y"]
)


@st.composite
def well_formed(draw: st.DrawFn) -> bytes:
    out = draw(ows) + draw(st.sampled_from([b"form-data", b"Form-Data"]))
    seen: set[bytes] = set()
    for _ in range(draw(st.integers(0, 5))):
        key = draw(keys)
        if key.lower() in seen and b"*" not in key:
            continue
        seen.add(key.lower())
        value = b'"' + draw(quoted) + b'"' if draw(st.booleans()) else draw(tokens)
        out += draw(ows) + b";" + draw(ows) + key + draw(ows) + b"=" + draw(ows) + value
    if draw(st.booleans()):
        out += draw(ows) + b";"
    return out + draw(ows)


@settings(max_examples=500)
@given(well_formed())
def test_a_well_formed_header_is_read_as_python_multipart_reads_it(value: bytes) -> None:
    assert ours(value) == peer(value)


# -- anything at all: refused, or python-multipart's reading ---------------------------------

adversarial_pieces = st.sampled_from(
    [b"form-data", b";", b" ", b"\t", b"=", b'"', b"\\", b"\\\"", b"\\\\", b"name", b"filename",
     b"filename*", b"name*", b"FILENAME", b"utf-8''evil.php", b"a.png", b"%2F", b"/", b"..",
     b"\x00", b"\r", b"\n", b"\xa0", b"\x85", b"\x0b", b"a b", b",", b"'"]
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A well-formed header with a few pieces inserted, removed or replaced anywhere."""
    value = draw(well_formed())
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(value)))
        end = draw(st.integers(start, min(len(value), start + 3)))
        value = value[:start] + draw(adversarial_pieces | st.binary(max_size=2)) + value[end:]
    return value


@settings(max_examples=800)
@given(mutated() | st.lists(adversarial_pieces, max_size=24).map(b"".join))
def test_any_header_is_refused_or_read_as_python_multipart_reads_it(value: bytes) -> None:
    result = ours(value)
    if result is not None:
        assert result == peer(value)


# -- examples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'form-data; name="a"', (b"form-data", {b"name": b"a"})),
        (b'form-data;name="a";filename="b"', (b"form-data", {b"name": b"a", b"filename": b"b"})),
        (b"FORM-DATA ; Name = a ; ", (b"form-data", {b"name": b"a"})),
        (b'form-data; name="a;b=\\"c\\""', (b"form-data", {b"name": b'a;b="c"'})),
        (b'form-data; name="C:\\dir\\x"', (b"form-data", {b"name": b"C:\\dir\\x"})),
        (b'form-data; name="a\\\\b"', (b"form-data", {b"name": b"a\\b"})),
        (b"form-data; name=a; filename*=UTF-8''b", (b"form-data", {b"name": b"a"})),
        (b"multipart/form-data; boundary=x", (b"multipart/form-data", {b"boundary": b"x"})),
    ],
)
def test_examples(value: bytes, expected: tuple[bytes, dict[bytes, bytes]]) -> None:
    assert parse_params(value, "the header") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "does not start with a type"),
        (b'"form-data"', "does not start with a type"),
        (b'form-data; name="a', "not a list"),  # unbalanced quote
        (b'form-data; name="a"b', "not a list"),
        (b"form-data; name=a b", "not a list"),
        (b"form-data; name", "not a list"),
        (b'form-data; name="a\x00"', "not a list"),
        (b'form-data; name="a\\\\"; filename="b"', "ends in a backslash"),
        (b'form-data; name="a"; NAME="b"', "twice"),
        (b"form-data, name=a", "not a list"),
    ],
)
def test_refused(value: bytes, message: str) -> None:
    with pytest.raises(MalformedUpload, match=message):
        parse_params(value, "the header")
