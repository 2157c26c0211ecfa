"""`content_disposition`: RFC 6266 values that no filename can break."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx._disposition import content_disposition


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("report.csv", 'attachment; filename="report.csv"'),
        ("my report (1).csv", 'attachment; filename="my report (1).csv"'),
        (
            "résumé.csv",
            "attachment; filename=\"resume.csv\"; filename*=UTF-8''r%C3%A9sum%C3%A9.csv",
        ),
        (
            "报告.csv",
            "attachment; filename=\"__.csv\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A.csv",
        ),
        (
            'say "hi".txt',
            "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt",
        ),
        ("a\\b/c.txt", "attachment; filename=\"a_b_c.txt\"; filename*=UTF-8''a%5Cb%2Fc.txt"),
        ("100%.csv", "attachment; filename=\"100_.csv\"; filename*=UTF-8''100%25.csv"),
    ],
)
def test_values(filename: str, expected: str) -> None:
    assert content_disposition(filename) == expected


def test_inline() -> None:
    assert content_disposition("a.png", "inline") == 'inline; filename="a.png"'


@pytest.mark.parametrize("filename", ["a\r\nSet-Cookie: x", "a\nb", "a\rb", "a\x00b", "a\x7fb"])
def test_control_characters_are_refused(filename: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        content_disposition(filename)


@pytest.mark.parametrize(
    ("filename", "disposition", "error"),
    [("", "attachment", ValueError), (b"a.csv", "attachment", TypeError), ("a", "x", ValueError)],
)
def test_bad_arguments(filename: Any, disposition: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        content_disposition(filename, disposition)


RFC5987_VALUE = re.compile(r"[A-Za-z0-9!#$&+\-.^_`|~%]+")


@given(st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1))
def test_property_any_name_gives_a_safe_header_that_carries_the_exact_name(name: str) -> None:
    value = content_disposition(name)
    assert value.isascii()
    assert all(" " <= ch <= "~" for ch in value)
    match = re.fullmatch(r'attachment; filename="([^"\\]*)"(?:; filename\*=UTF-8\'\'(.*))?', value)
    assert match is not None, value
    fallback, encoded = match.groups()
    if encoded is None:
        assert fallback == name
    else:
        assert RFC5987_VALUE.fullmatch(encoded)
        assert unquote(encoded, encoding="utf-8", errors="strict") == name
