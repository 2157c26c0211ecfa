"""Range parsing (RFC 9110 14.1-14.2) and the multipart/byteranges layout."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx._download.ranges import (
    DEFAULT_MAX_RANGES,
    ByteRange,
    multipart_byteranges,
    parse_range,
)
from tests.byteranges_parser import parse_byteranges

R = ByteRange


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("bytes=0-499", 10_000, [R(0, 500)]),
        ("bytes=500-999", 10_000, [R(500, 1000)]),
        ("bytes=9500-", 10_000, [R(9500, 10_000)]),
        ("bytes=-500", 10_000, [R(9500, 10_000)]),
        ("bytes=-20000", 10_000, [R(0, 10_000)]),
        ("bytes=0-0,-1", 10_000, [R(0, 1), R(9999, 10_000)]),
        ("bytes=0-99999999999999999999999", 10, [R(0, 10)]),
        ("bytes=000000000000000000000002-3", 10, [R(2, 4)]),
        ("BYTES=1-2", 10, [R(1, 3)]),
        ("bytes=1-2 ,\t, 5-6", 10, [R(1, 3), R(5, 7)]),
        # overlapping and adjacent ranges are merged, whatever their order
        ("bytes=5-9,0-2,3-4", 10, [R(0, 10)]),
        ("bytes=0-5,2-3", 10, [R(0, 6)]),
        ("bytes=6-7,0-1", 10, [R(0, 2), R(6, 8)]),
        # unsatisfiable: the valid ones that ask for nothing that exists
        ("bytes=10-", 10, []),
        ("bytes=10-20", 10, []),
        ("bytes=-0", 10, []),
        ("bytes=0-0", 0, []),
        ("bytes=-5", 0, []),
        ("bytes=99999999999999999999-", 10, []),
        ("bytes=10-20,0-1", 10, [R(0, 2)]),
        # malformed or not for us: ignored
        ("bytes=5-2", 10, None),
        ("bytes=-", 10, None),
        ("bytes=", 10, None),
        ("bytes=,", 10, None),
        ("bytes 0-1", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=1-2-3", 10, None),
        ("bytes=+1-2", 10, None),
        ("bytes=\u0661-\u0662", 10, None),
        ("bytes = 0-1", 10, None),
        ("items=0-1", 10, None),
        ("", 10, None),
    ],
)
def test_examples(value: str, size: int, expected: list[ByteRange] | None) -> None:
    assert parse_range(value, size) == expected


def test_too_many_ranges_are_ignored() -> None:
    many = ",".join(f"{i}-{i}" for i in range(0, 2 * (DEFAULT_MAX_RANGES + 1), 2))
    assert parse_range(f"bytes={many}", 1000) is None
    allowed = ",".join(f"{i}-{i}" for i in range(0, 2 * DEFAULT_MAX_RANGES, 2))
    parsed = parse_range(f"bytes={allowed}", 1000)
    assert parsed is not None
    assert len(parsed) == DEFAULT_MAX_RANGES


def test_content_range() -> None:
    assert R(0, 500).content_range(1234) == "bytes 0-499/1234"


def test_multipart_layout_parses_back_and_its_length_is_exact() -> None:
    data = bytes(range(256)) * 4
    ranges = [R(0, 10), R(100, 300), R(1000, 1024)]
    spans, length = multipart_byteranges(ranges, len(data), "application/pdf", "xyzzy")
    body = b"".join(
        span if isinstance(span, bytes) else data[span.start : span.stop] for span in spans
    )
    assert len(body) == length
    assert body.startswith(b"--xyzzy\r\n")
    assert body.endswith(b"\r\n--xyzzy--\r\n")
    parts = parse_byteranges(body, "xyzzy")
    assert [(headers["content-range"], content) for headers, content in parts] == [
        (f"bytes {r.start}-{r.stop - 1}/1024", data[r.start : r.stop]) for r in ranges
    ]
    assert {headers["content-type"] for headers, _ in parts} == {"application/pdf"}


# -- property: any valid range set, any size ---------------------------------------

int_range = st.tuples(st.integers(0, 300), st.integers(0, 300)).map(
    lambda pair: f"{min(pair)}-{max(pair)}"
)
open_range = st.integers(0, 300).map(lambda first: f"{first}-")
suffix_range = st.integers(0, 300).map(lambda length: f"-{length}")
range_spec = st.one_of(int_range, open_range, suffix_range)
whitespace = st.sampled_from(["", " ", "\t", "  "])


def wanted_positions(spec: str, size: int) -> set[int]:
    """The byte positions one range-spec asks for, straight from RFC 9110's words."""
    first, _, last = spec.partition("-")
    if not first:
        return set(range(max(size - int(last), 0), size)) if int(last) else set()
    stop = size if not last else min(int(last) + 1, size)
    return set(range(int(first), stop))


@given(
    st.lists(st.tuples(range_spec, whitespace, whitespace), min_size=1, max_size=12),
    st.integers(0, 300),
)
def test_property_ranges_cover_exactly_the_requested_bytes(
    specs: list[tuple[str, str, str]], size: int
) -> None:
    value = "bytes=" + ",".join(f"{before}{spec}{after}" for spec, before, after in specs)
    parsed = parse_range(value, size)
    assert parsed is not None
    wanted = set().union(*(wanted_positions(spec, size) for spec, _, _ in specs))
    served: set[int] = set()
    for previous, current in itertools.pairwise(parsed):
        assert previous.stop < current.start  # sorted, no overlap, not even touching
    for byte_range in parsed:
        assert 0 <= byte_range.start < byte_range.stop <= size
        served.update(range(byte_range.start, byte_range.stop))
    assert served == wanted
