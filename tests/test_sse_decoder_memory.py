"""`SSEDecoder`'s memory: what it holds is bounded by its limits in characters, however
many lines or chunks those characters came in, and parsing a chunk costs a bounded
amount beside, whatever its size and however many lines it holds (the parsing rules:
``test_sse.py``).

A Python string costs 49-80 bytes before its first character: a decoder holding one
string per data line, per pending piece or per line of a chunk pays that per line,
which for short lines is 20-40 times the characters that its limits count."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.soak.fuzz import decoder_memory
from streamfx import ServerSentEvent, SSEDecodeError, SSEDecoder

BYTES_PER_CHARACTER = 4  # the most a str takes per character (UCS-4)
HELD_SLACK = 16 << 10  # the decoder's objects, a block of recent pieces (the docstring's)
FEED_SLACK = 128 << 10  # what `feed` adds while it parses (the docstring's)


def fed(decoder: SSEDecoder, stream: bytes, chunk: int) -> tuple[int, int]:
    """Feed `stream` in chunks of `chunk` bytes (each made before the measure starts),
    up to the end or to an `SSEDecodeError`: (memory held by the decoder after, its
    largest growth while feeding), in bytes. The events a `feed` returns are the
    caller's: their size (what is traced when `feed` returns, less what is left once
    they are dropped) is not counted in the growth."""
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    return decoder_memory(decoder, chunks)


@pytest.mark.parametrize(
    "line",
    [b"data\n", b"data:ab\n", "data:\u20ac\n".encode(), "data: \u20ac\u20ac\n".encode()],
    ids=["empty", "two-ascii", "one-euro", "two-euro"],
)
def test_many_short_data_lines_are_held_in_about_their_characters(
    traced: None, line: bytes
) -> None:
    max_event = 200_000
    decoder = SSEDecoder(max_line=1024, max_event=max_event)
    count = max_event // len(line)  # stays under max_event: nothing is refused
    held, _ = fed(decoder, line * count, 65536)
    assert held <= BYTES_PER_CHARACTER * max_event + HELD_SLACK, (held, count)
    (event,) = decoder.feed(b"\n")
    value = line.decode().partition(":")[2].removeprefix(" ").removesuffix("\n")
    assert event == ServerSentEvent("\n".join([value] * count))


def test_a_line_trickling_in_one_byte_at_a_time_is_held_in_about_its_characters(
    traced: None,
) -> None:
    max_line = 50_000
    decoder = SSEDecoder(max_line=max_line, max_event=max_line)
    held, _ = fed(decoder, b"data: " + "\u20ac".encode() * 15_000, 1)
    assert held <= BYTES_PER_CHARACTER * max_line + HELD_SLACK, held
    assert decoder.feed(b"\n\n") == [ServerSentEvent("\u20ac" * 15_000)]


@pytest.mark.parametrize(
    "line",
    [b"xy\n", "x:\u20ac\r".encode(), b"\xff\n", b"\n"],
    ids=["field", "euro-cr", "invalid", "blank"],
)
@pytest.mark.parametrize("size", [65536, 1 << 19])
def test_a_chunk_of_many_short_lines_costs_a_bounded_amount_whatever_its_size(
    traced: None, line: bytes, size: int
) -> None:
    chunk = line * (size // len(line))
    _, peak = fed(SSEDecoder(max_line=1024, max_event=8192), chunk, len(chunk))
    assert peak <= FEED_SLACK, peak


PIECES = [b"data:", b"data: ", b"\n", b"\r", b"\r\n", b"\xe2\x82\xac", b"\xff", b"x", b": "]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=12),
    st.integers(1, 2000),
    st.sampled_from([1, 7, 4096, 65536]),
)
def test_what_is_held_is_bounded_by_the_limits(
    pattern: list[bytes], repeat: int, chunk: int
) -> None:
    """Any stream of SSE pieces, fed in any chunk size: once fed, the decoder holds at
    most about `max_line` + `max_event` characters; while feeding, that and a bounded
    amount more."""
    max_line, max_event = 512, 4096
    decoder = SSEDecoder(max_line=max_line, max_event=max_event)
    stream = b"".join(pattern) * repeat
    bound = BYTES_PER_CHARACTER * (max_line + max_event) + HELD_SLACK
    tracemalloc.start()
    try:
        held, peak = fed(decoder, stream, chunk)
    finally:
        tracemalloc.stop()
    assert held <= bound
    assert peak <= bound + FEED_SLACK


# -- a chunk is parsed in slices: the same events as fed any other way ------------------

SLICE = 2048  # the decoder's `_SLICE`


def byte_by_byte(stream: bytes) -> tuple[list[ServerSentEvent], str | None]:
    """The events of `stream` fed one byte at a time (no slice ever cut), and the limit
    it passed."""
    decoder = SSEDecoder(max_line=3000, max_event=5000)
    events: list[ServerSentEvent] = []
    for index in range(len(stream)):
        try:
            events += decoder.feed(stream[index : index + 1])
        except SSEDecodeError as error:
            return events + error.events, error.limit
    return events, None


def whole(stream: bytes) -> tuple[list[ServerSentEvent], str | None]:
    decoder = SSEDecoder(max_line=3000, max_event=5000)
    try:
        return decoder.feed(stream), None
    except SSEDecodeError as error:
        return error.events, error.limit


@pytest.mark.parametrize(
    "across",
    [b"\r\n", "\u20ac".encode(), b"\xf0\x9f\x98\x80", b"\r\r", b"\n\n"],
    ids=["crlf", "euro", "astral", "cr-cr", "lf-lf"],
)
def test_what_a_slice_boundary_cuts_is_joined(across: bytes) -> None:
    for at in range(1, len(across)):
        head = b"data: a\n:" + b"p" * (SLICE - 9 - at)  # `across` cut after `at` bytes
        stream = head + across + b"data: b\n\n" + b"data: " + b"c" * 3000 + b"\n\n"
        assert len(head) + at == SLICE
        assert whole(stream) == byte_by_byte(stream)


LINES = [b"", b"data", b"data: x", b"id: 1", b"event: e", b"retry: 5", b": c", b"\xe2\x82\xac"]
LINES += [b"data: " + b"y" * 1500, b"data: \xf0\x9f\x98\x80", b"x" * 2500]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2 * SLICE),
    st.lists(st.tuples(st.sampled_from(LINES), st.sampled_from([b"\r", b"\n", b"\r\n"]))),
)
def test_a_chunk_decodes_as_the_same_bytes_fed_one_at_a_time(
    padding: int, lines: list[tuple[bytes, bytes]]
) -> None:
    stream = b":" + b"p" * padding + b"\n" + b"".join(line + end for line, end in lines)
    assert whole(stream) == byte_by_byte(stream)
