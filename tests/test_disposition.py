"""`content_disposition`: RFC 6266 values with an RFC 8187 ``filename*``; injection refused."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx._response.disposition import ascii_fallback, content_disposition

CONTROL = [*map(chr, range(0x20)), "\x7f", "\x85", "\u2028", "\u2029"]


def test_plain_ascii_name_gets_only_the_quoted_filename() -> None:
    assert content_disposition("report.csv") == 'attachment; filename="report.csv"'


def test_inline_disposition() -> None:
    assert content_disposition("a.png", "inline") == 'inline; filename="a.png"'


def test_non_ascii_name_gets_filename_star_and_an_ascii_fallback() -> None:
    value = content_disposition("résumé 2024.pdf")
    assert value == (
        "attachment; filename=\"resume 2024.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf"
    )
    assert value.isascii()


def test_name_without_ascii_equivalent_falls_back_to_underscores() -> None:
    value = content_disposition("报告.txt")
    assert 'filename="__.txt"' in value
    star = value.split("filename*=UTF-8''")[1]
    assert unquote(star) == "报告.txt"


@pytest.mark.parametrize("name", ['a"b.txt', "a\\b.txt", "100%.txt", 'x"; filename="evil.exe'])
def test_quotes_backslashes_and_percent_never_reach_the_quoted_fallback(name: str) -> None:
    value = content_disposition(name)
    fallback = re.fullmatch(r'attachment; filename="([^"]*)"; filename\*=UTF-8\'\'(\S+)', value)
    assert fallback is not None, value
    assert not set(fallback.group(1)) & set('"\\%')
    assert unquote(fallback.group(2)) == name


@pytest.mark.parametrize("char", CONTROL)
def test_control_characters_are_refused(char: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        content_disposition(f"a{char}b.txt")


def test_header_injection_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="header injection"):
        content_disposition("a.txt\r\nSet-Cookie: session=stolen")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="empty"):
        content_disposition("")
    with pytest.raises(ValueError, match="token"):
        content_disposition("a.txt", "attachment; x=1")
    with pytest.raises(TypeError):
        content_disposition(b"a.txt")  # type: ignore[arg-type]


names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40
)


@given(names)
def test_any_name_gives_a_safe_header_that_reads_back(name: str) -> None:
    value = content_disposition(name)
    assert value.isascii()
    assert value.isprintable()
    assert "\r" not in value
    assert "\n" not in value
    if "filename*=" in value:
        assert unquote(value.split("filename*=UTF-8''")[1]) == name
    else:
        assert value == f'attachment; filename="{name}"'
    fallback = ascii_fallback(name)
    assert fallback.isascii()
    assert not set(fallback) & set('"\\%')
