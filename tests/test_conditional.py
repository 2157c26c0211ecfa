"""Validators, HTTP dates and the precondition order of RFC 9110 13.2.2."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from starlette.datastructures import Headers as StarletteHeaders

from streamfx._download.conditional import (
    RequestHeaders,
    Validators,
    evaluate_preconditions,
    http_date,
    if_range_allows,
    parse_http_date,
)

V = Validators('"abc-10"', 784111777)  # Sun, 06 Nov 1994 08:49:37 GMT
SAME = "Sun, 06 Nov 1994 08:49:37 GMT"
EARLIER = "Sun, 06 Nov 1994 08:49:36 GMT"
LATER = "Sun, 06 Nov 1994 08:49:38 GMT"


def check(*pairs: tuple[str, str], method: str = "GET") -> int | None:
    return evaluate_preconditions(method, RequestHeaders(pairs), V)


def test_http_dates_in_all_three_forms() -> None:
    assert http_date(784111777) == SAME
    assert parse_http_date(SAME) == 784111777
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777
    assert parse_http_date("yesterday") is None
    assert parse_http_date("") is None


def test_headers_are_case_insensitive_and_repeated_lines_join() -> None:
    headers = RequestHeaders([("If-None-Match", '"a"'), ("if-none-match", '"b"')])
    assert headers.get("IF-NONE-MATCH") == '"a", "b"'
    assert headers.get("range") is None


def test_single_is_only_for_a_header_on_one_line() -> None:
    headers = RequestHeaders([("Range", "bytes=0-1"), ("range", "bytes=2-3"), ("If-Range", "x")])
    assert headers.single("range") is None
    assert headers.single("IF-RANGE") == "x"
    assert headers.single("if-match") is None
    assert headers.count("Range") == 2


def test_headers_from_a_mapping_from_bytes_and_from_multidicts() -> None:
    assert RequestHeaders({"Range": "bytes=0-1"}).get("range") == "bytes=0-1"
    raw = RequestHeaders([(b"If-None-Match", b'"a"'), (b"if-none-match", b'"\xe9"')])
    assert raw.get("if-none-match") == '"a", "\xe9"'  # bytes are latin-1
    starlette = StarletteHeaders(raw=[(b"if-none-match", b'"a"'), (b"If-None-Match", b'"b"')])
    assert RequestHeaders(starlette).get("If-None-Match") == '"a", "b"'
    multi = CIMultiDictProxy(CIMultiDict([("If-None-Match", '"a"'), ("IF-NONE-MATCH", '"b"')]))
    assert RequestHeaders(multi).get("if-none-match") == '"a", "b"'


def test_repeated_lines_follow_rfc_9110() -> None:
    # If-None-Match is a list: two lines are one list, so either tag matches
    assert check(("If-None-Match", '"x"'), ("If-None-Match", '"abc-10"')) == 304
    # If-Match too: any listed tag lets the request through
    assert check(("If-Match", '"x"'), ("If-Match", '"abc-10"')) is None
    # the dates hold one value: repeated, they are ignored
    assert check(("If-Unmodified-Since", EARLIER), ("If-Unmodified-Since", EARLIER)) is None


@pytest.mark.parametrize(
    "headers", ["range: bytes=0-1", b"range", 3, [("range",)], [("range", 1)], {"a": ["b"]}]
)
def test_headers_of_another_shape_are_a_type_error(headers: Any) -> None:
    with pytest.raises(TypeError, match=r"request[ _]header"):
        RequestHeaders(headers)


@pytest.mark.parametrize(
    "value", ['"abc-10"', 'W/"abc-10"', '"x", "abc-10"', "*", ' "x" ,W/"abc-10" ']
)
def test_if_none_match_uses_weak_comparison(value: str) -> None:
    assert check(("If-None-Match", value)) == 304
    assert check(("If-None-Match", value), method="HEAD") == 304
    assert check(("If-None-Match", value), method="POST") == 412


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    assert check(("If-None-Match", '"other"'), ("If-Modified-Since", LATER)) is None
    assert check(("If-None-Match", '"abc-10"'), ("If-Modified-Since", EARLIER)) == 304


@pytest.mark.parametrize(("since", "expected"), [(SAME, 304), (LATER, 304), (EARLIER, None)])
def test_if_modified_since(since: str, expected: int | None) -> None:
    assert check(("If-Modified-Since", since)) == expected


def test_if_modified_since_is_ignored_when_invalid_repeated_or_not_get() -> None:
    assert check(("If-Modified-Since", "not a date")) is None
    assert check(("If-Modified-Since", SAME), ("If-Modified-Since", SAME)) is None
    assert check(("If-Modified-Since", SAME), method="POST") is None


def test_if_match_and_if_unmodified_since() -> None:
    assert check(("If-Match", '"abc-10"')) is None
    assert check(("If-Match", "*")) is None
    assert check(("If-Match", 'W/"abc-10"')) == 412  # strong comparison
    assert check(("If-Match", '"other"')) == 412
    assert check(("If-Unmodified-Since", EARLIER)) == 412
    assert check(("If-Unmodified-Since", SAME)) is None
    # If-Match, when present, decides; If-Unmodified-Since is not looked at
    assert check(("If-Match", '"abc-10"'), ("If-Unmodified-Since", EARLIER)) is None


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ('"abc-10"', True),
        ('W/"abc-10"', False),  # If-Range needs a strong match
        ('"other"', False),
        ('"abc-10", "x"', False),
        (SAME, True),
        (LATER, False),
        (EARLIER, False),
        ("garbage", False),
    ],
)
def test_if_range(value: str, allowed: bool) -> None:
    assert if_range_allows(value, V) is allowed
