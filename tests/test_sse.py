"""ServerSentEvent (encoding) and SSEDecoder (the WHATWG parsing algorithm)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx import ServerSentEvent, SSEDecodeError, SSEDecoder


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


# -- encoding -------------------------------------------------------------------------


def test_plain_data() -> None:
    assert ServerSentEvent("hello").encode() == b"data: hello\n\n"


def test_all_fields_in_order() -> None:
    event = ServerSentEvent(data="d", event="update", id="7", retry=3000, comment="hi")
    assert event.encode() == b": hi\nevent: update\nid: 7\nretry: 3000\ndata: d\n\n"


@pytest.mark.parametrize("data", ["a\nb\nc", "a\rb\rc", "a\r\nb\r\nc", "a\nb\r\nc"])
def test_line_breaks_in_data_become_several_data_lines(data: str) -> None:
    encoded = ServerSentEvent(data).encode()
    assert encoded == b"data: a\ndata: b\ndata: c\n\n"
    assert decode(encoded) == [ServerSentEvent("a\nb\nc")]


def test_trailing_and_leading_line_breaks_survive() -> None:
    for data in ["\n", "x\n", "\nx", "\n\n", "\r\n\r"]:
        normalized = data.replace("\r\n", "\n").replace("\r", "\n")
        assert decode(ServerSentEvent(data).encode()) == [ServerSentEvent(normalized)]


def test_other_unicode_separators_are_not_line_breaks() -> None:
    data = "a\x0bb\x0cc\x1cd\x85e\u2028f\u2029g"
    encoded = ServerSentEvent(data).encode()
    assert encoded.count(b"data:") == 1
    assert decode(encoded) == [ServerSentEvent(data)]


def test_leading_space_survives() -> None:
    event = ServerSentEvent(data="  two spaces", event=" spaced", id=" 1")
    encoded = event.encode()
    assert encoded == b"event:  spaced\nid:  1\ndata:   two spaces\n\n"
    assert decode(encoded) == [ServerSentEvent(data="  two spaces", event=" spaced", id=" 1")]


def test_empty_data_dispatches_an_empty_message() -> None:
    assert ServerSentEvent("").encode() == b"data: \n\n"
    assert decode(ServerSentEvent("").encode()) == [ServerSentEvent("")]


def test_no_data_dispatches_nothing_but_sets_id_and_retry() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(ServerSentEvent(id="5", retry=10).encode()) == []
    assert decoder.last_event_id == "5"
    assert decoder.retry == 10


def test_multiline_comment_becomes_several_comment_lines() -> None:
    event = ServerSentEvent(comment="one\ntwo\r\n\rthree")
    assert event.encode() == b": one\n: two\n:\n: three\n\n"
    assert decode(event.encode() + ServerSentEvent("x").encode()) == [ServerSentEvent("x")]


def test_comment_only_and_empty_events_dispatch_nothing() -> None:
    assert ServerSentEvent(comment="keep-alive").encode() == b": keep-alive\n\n"
    assert ServerSentEvent().encode() == b"\n"
    stream = ServerSentEvent(comment="c").encode() + ServerSentEvent().encode()
    assert decode(stream + ServerSentEvent("x").encode()) == [ServerSentEvent("x")]


def test_lone_surrogate_is_refused_at_construction() -> None:
    with pytest.raises(UnicodeEncodeError):
        ServerSentEvent("\ud800")


def test_utf8() -> None:
    assert ServerSentEvent("héllo ✓").encode() == "data: héllo ✓\n\n".encode()


@pytest.mark.parametrize("field", ["event", "id"])
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "\n"])
def test_line_break_in_event_or_id_is_refused(field: str, bad: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must not contain CR or LF"):
        ServerSentEvent(data="x", **{field: bad})  # type: ignore[arg-type]


def test_nul_in_id_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        ServerSentEvent(data="x", id="a\0b")


@pytest.mark.parametrize("retry", [-1, 1.5, "100", True, False, None.__class__])
def test_bad_retry_is_refused(retry: object) -> None:
    with pytest.raises(ValueError, match="retry must be a non-negative int"):
        ServerSentEvent(data="x", retry=retry)  # type: ignore[arg-type]


def test_retry_zero_is_fine() -> None:
    assert ServerSentEvent(retry=0).encode() == b"retry: 0\n\n"


@pytest.mark.parametrize("field", ["data", "event", "id", "comment"])
def test_wrong_type_is_refused(field: str) -> None:
    with pytest.raises(TypeError, match=f"{field} must be a str"):
        ServerSentEvent(**{field: 1})  # type: ignore[arg-type]


def test_events_are_immutable_and_encode_is_cached() -> None:
    event = ServerSentEvent("x", id="1")
    with pytest.raises(AttributeError):
        event.data = "y"  # type: ignore[misc]
    assert event.encode() is event.encode()


def test_equality_hash_repr() -> None:
    assert ServerSentEvent("x", event="e") == ServerSentEvent(data="x", event="e")
    assert ServerSentEvent("x") != ServerSentEvent("x", id="1")
    assert len({ServerSentEvent("x"), ServerSentEvent("x")}) == 1
    assert repr(ServerSentEvent("x", retry=5)) == "ServerSentEvent(data='x', retry=5)"


# -- decoding -------------------------------------------------------------------------


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"])
def test_line_ends(end: bytes) -> None:
    stream = b"event: e" + end + b"data: a" + end + b"data: b" + end + end
    assert decode(stream) == [ServerSentEvent("a\nb", event="e")]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # If the LF after the CR counted as a second line end, "data: a" would be
    # dispatched alone before "data: b".
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [ServerSentEvent("a\nb")]
    assert decode(b"data: a\r", b"\n", b"\r", b"\n") == [ServerSentEvent("a")]


def test_cr_then_other_text_in_next_chunk() -> None:
    assert decode(b"data: a\r", b"data: b\r\r") == [ServerSentEvent("a\nb")]


def test_leading_bom_stripped_once() -> None:
    assert decode(b"\xef\xbb\xbfdata: a\n\n") == [ServerSentEvent("a")]
    assert decode(b"\xef\xbb", b"\xbfdata: a\n\n") == [ServerSentEvent("a")]
    # A second BOM is part of the first field name, which is then unknown.
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n") == [ServerSentEvent("b")]
    # A BOM later in the stream is not stripped either.
    assert decode(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == [ServerSentEvent("a")]


def test_field_without_colon_has_empty_value() -> None:
    assert decode(b"data\n\n") == [ServerSentEvent("")]
    assert decode(b"data\ndata\ndata: x\n\n") == [ServerSentEvent("\n\nx")]
    assert decode(b"event: e\nevent\ndata: x\n\n") == [ServerSentEvent("x")]


def test_only_one_space_is_stripped_and_no_space_is_fine() -> None:
    assert decode(b"data:x\n\n") == [ServerSentEvent("x")]
    assert decode(b"data:  x\n\n") == [ServerSentEvent(" x")]
    assert decode(b"data:\tx\n\n") == [ServerSentEvent("\tx")]
    assert decode(b"data: a:b: c\n\n") == [ServerSentEvent("a:b: c")]


def test_unknown_fields_and_comments_are_ignored() -> None:
    stream = b": a comment\nfoo: bar\nData: no\ndata: yes\n:another\n\n"
    assert decode(stream) == [ServerSentEvent("yes")]


def test_comment_only_block_dispatches_nothing() -> None:
    assert decode(b":\n\n: ping\n\n") == []


def test_id_with_nul_is_ignored() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert events == [ServerSentEvent("a", id="1"), ServerSentEvent("b", id="1")]
    assert decoder.last_event_id == "1"


def test_last_event_id_is_carried_and_can_be_reset() -> None:
    decoder = SSEDecoder()
    assert decoder.last_event_id == ""
    events = decoder.feed(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n")
    assert [e.id for e in events] == ["1", "1", None]
    assert decoder.last_event_id == ""


def test_id_only_takes_effect_at_dispatch() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n\nid: 9\ndata: b")
    assert decoder.last_event_id == ""
    assert decoder.feed(b"\n\n") == [ServerSentEvent("b", id="9")]
    assert decoder.last_event_id == "9"


def test_retry() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"retry: 1500\ndata: a\n\ndata: b\n\nretry: 1x\nretry: -1\ndata: c\n\n")
    assert [e.retry for e in events] == [1500, None, None]
    assert decoder.retry == 1500
    decoder.feed(b"retry:\xd9\xa3\n\n")  # ARABIC-INDIC DIGIT THREE is not an ASCII digit
    assert decoder.retry == 1500
    decoder.feed(b"retry: 0\n\n")
    assert decoder.retry == 0
    decoder.feed(b"retry: " + b"9" * 5000 + b"\n\n")  # absurd: ignored, no error
    assert decoder.retry == 0


def test_long_line_split_over_many_chunks() -> None:
    decoder = SSEDecoder()
    for _ in range(1000):
        assert decoder.feed(b"x" * 100) == []
    assert decoder.feed(b"\n") == []  # a field named "xxx...", unknown
    assert decoder.feed(b"data: ") == []
    for _ in range(1000):
        assert decoder.feed(b"y" * 100) == []
    assert decoder.feed(b"\r\n\r\n") == [ServerSentEvent("y" * 100_000)]


def test_event_type_resets_after_dispatch() -> None:
    assert decode(b"event: e\ndata: a\n\ndata: b\n\nevent: e\n\ndata: c\n\n") == [
        ServerSentEvent("a", event="e"),
        ServerSentEvent("b"),
        ServerSentEvent("c"),
    ]


def test_final_event_without_blank_line_is_not_dispatched() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n") == [ServerSentEvent("a")]
    assert decoder.feed(b"data: c") == []


def test_utf8_split_across_chunks_and_invalid_bytes() -> None:
    encoded = "data: ✓é\n\n".encode()
    chunks = [encoded[i : i + 1] for i in range(len(encoded))]
    assert decode(*chunks) == [ServerSentEvent("✓é")]
    assert decode(b"data: a\xffb\n\n") == [ServerSentEvent("a\ufffdb")]


def test_empty_chunks() -> None:
    assert decode(b"", b"data: a", b"", b"\r", b"", b"\n\n", b"") == [ServerSentEvent("a")]


# -- limits ---------------------------------------------------------------------------


def test_default_limits() -> None:
    decoder = SSEDecoder()
    assert (decoder.max_line, decoder.max_event) == (1 << 20, 8 << 20)


@pytest.mark.parametrize("whole", [True, False])
def test_a_line_longer_than_max_line_is_refused_without_being_held(whole: bool) -> None:
    decoder = SSEDecoder(max_line=1000)
    decoder.feed(b"data: a\n\n")
    if whole:
        with pytest.raises(SSEDecodeError, match="max_line=1000") as caught:
            decoder.feed(b"data: " + b"x" * 2000)
    else:
        for _ in range(9):
            assert decoder.feed(b"x" * 100) == []  # 900 characters: still fine
        with pytest.raises(SSEDecodeError, match="max_line=1000") as caught:
            decoder.feed(b"x" * 101)
    assert caught.value.limit == "max_line"
    assert caught.value.events == []


def test_a_line_of_exactly_max_line_is_fine() -> None:
    decoder = SSEDecoder(max_line=10)
    assert decoder.feed(b"data:" + b"y" * 5) == []
    assert decoder.feed(b"\n\n") == [ServerSentEvent("yyyyy")]
    assert decoder.feed(b"data:12345\r\n\r\n") == [ServerSentEvent("12345")]


def test_comment_and_unknown_lines_are_bounded_too() -> None:
    with pytest.raises(SSEDecodeError, match="max_line"):
        SSEDecoder(max_line=100).feed(b":" + b"c" * 200 + b"\n")
    with pytest.raises(SSEDecodeError, match="max_line"):
        SSEDecoder(max_line=100).feed(b"x" * 200 + b"\n")


def test_data_lines_without_a_blank_line_are_bounded_by_max_event() -> None:
    decoder = SSEDecoder(max_line=200, max_event=1000)
    line = b"data: " + b"d" * 99 + b"\n"  # 99 characters of data, + 1 line break
    for _ in range(10):  # 10 * 99 + 9 line breaks = 999 characters
        assert decoder.feed(line) == []
    with pytest.raises(SSEDecodeError, match="max_event=1000") as caught:
        decoder.feed(line)
    assert caught.value.limit == "max_event"


def test_an_event_of_exactly_max_event_is_fine() -> None:
    decoder = SSEDecoder(max_line=100, max_event=10)
    assert decoder.feed(b"data: 1234\ndata: 56789\n\n") == [ServerSentEvent("1234\n56789")]


def test_events_completed_before_the_limit_travel_with_the_error() -> None:
    decoder = SSEDecoder(max_line=50)
    with pytest.raises(SSEDecodeError) as caught:
        decoder.feed(b"data: a\n\ndata: b\n\ndata: " + b"z" * 60 + b"\n\ndata: c\n\n")
    assert caught.value.events == [ServerSentEvent("a"), ServerSentEvent("b")]


def test_after_the_error_the_stream_is_refused_until_end_of_stream() -> None:
    decoder = SSEDecoder(max_line=10)
    decoder.feed(b"id: 7\ndata: a\n\n")
    with pytest.raises(SSEDecodeError):
        decoder.feed(b"data: " + b"z" * 20)
    with pytest.raises(SSEDecodeError, match="end_of_stream"):
        decoder.feed(b"\n\ndata: b\n\n")
    decoder.end_of_stream()
    assert decoder.feed(b"data: c\n\n") == [ServerSentEvent("c", id="7")]


@pytest.mark.parametrize("limits", [{"max_line": 0}, {"max_event": -1}, {"max_line": 1.5}])
def test_limits_must_be_positive_ints(limits: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError), match="must be a positive int"):
        SSEDecoder(**limits)  # type: ignore[arg-type]


def test_a_huge_stream_without_line_ends_holds_about_max_line() -> None:
    import tracemalloc

    decoder = SSEDecoder(max_line=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(SSEDecodeError):
            for _ in range(100):  # 100 MiB, 1 MiB at a time
                decoder.feed(b"data: " + b"x" * (1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


# -- the end of a stream and reconnection (web-platform-tests eventsource/) -----------


def reconnect(
    decoder: SSEDecoder, resource: Callable[[str | None], bytes], connections: int
) -> list[tuple[str, str | None]]:
    """What an EventSource sees over `connections` connections to `resource` (which
    answers a ``Last-Event-ID`` header, or None without one), each ending with the
    body: (data, lastEventId) per message."""
    seen: list[tuple[str, str | None]] = []
    for _ in range(connections):
        header = decoder.last_event_id or None
        for event in decoder.feed(resource(header)):
            seen.append((event.data or "", event.id or ""))
        decoder.end_of_stream()
    return seen


def last_event_id_py(idvalue: bytes = "\u2026".encode()) -> Callable[[str | None], bytes]:
    """eventsource/resources/last-event-id.py"""

    def resource(last_event_id: str | None) -> bytes:
        if last_event_id:
            return b"data: " + last_event_id.encode() + b"\n\n"
        return b"id: " + idvalue + b"\nretry: 200\ndata: hello\n\n"

    return resource


def test_wpt_format_field_id() -> None:
    # The id set on the first connection is sent back and stays in effect on the next.
    seen = reconnect(SSEDecoder(), last_event_id_py(), 2)
    assert seen == [("hello", "\u2026"), ("\u2026", "\u2026")]


def test_wpt_format_field_id_2() -> None:
    seen = reconnect(SSEDecoder(), last_event_id_py(), 3)
    assert seen == [("hello", "\u2026"), ("\u2026", "\u2026"), ("\u2026", "\u2026")]


@pytest.mark.parametrize("idvalue", [b"\0\0", b"x\0", b"\0x", b"x\0x", b" \0"])
def test_wpt_format_field_id_null(idvalue: bytes) -> None:
    # An id holding NUL is ignored: no Last-Event-ID is sent on reconnection.
    decoder = SSEDecoder()
    seen = reconnect(decoder, last_event_id_py(idvalue), 2)
    assert seen == [("hello", ""), ("hello", "")]
    assert decoder.retry == 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"id: 1\ndata: 1\n\ndata:2\n\n", [("1", "1"), ("2", "1")]),
        (b"id: 1\ndata: 1\n\nid: 2\ndata:2\n\ndata:3\n\n", [("1", "1"), ("2", "2"), ("3", "2")]),
        (b"id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n", [("1", "1"), ("2", ""), ("3", "")]),
        (b"id: 1\ndata: 1\n\nid\ndata:2\n\ndata:3\n\n", [("1", "1"), ("2", ""), ("3", "")]),
    ],
)
def test_wpt_format_field_id_3(body: bytes, expected: list[tuple[str, str]]) -> None:
    # eventsource/resources/last-event-id2.py: the id persists, changes, or resets.
    assert reconnect(SSEDecoder(), lambda _header: body, 1) == expected


@pytest.mark.parametrize("newline", [b"", b"\n"])
def test_wpt_format_data_before_final_empty_line(newline: bytes) -> None:
    # The unfinished event at the end of a connection is dropped, and its id never
    # takes effect: the second connection's first message is test1 again, with no id.
    message = b"retry:1000\ndata:test1\n\nid:test\ndata:test2" + newline
    decoder = SSEDecoder()
    seen = reconnect(decoder, lambda _header: message, 2)
    assert seen == [("test1", ""), ("test1", "")]
    assert (decoder.last_event_id, decoder.retry) == ("", 1000)


def test_end_of_stream_drops_a_partial_line_a_cr_and_a_split_character() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a\r")  # a CR whose LF may follow: not on the next connection
    decoder.end_of_stream()
    assert decoder.feed(b"\ndata: b\n\n") == [ServerSentEvent("b")]
    decoder.feed(b"data: \xe2\x9c")  # half of a check mark
    decoder.end_of_stream()
    assert decoder.feed(b"\x93data: c\n\n") == []  # U+FFFD starts an unknown field name
    decoder.feed(b"event: e\ndata: d")
    decoder.end_of_stream()
    assert decoder.feed(b"\n\ndata: f\n\n") == [ServerSentEvent("f")]


def test_a_new_stream_may_start_with_a_byte_order_mark_again() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef\xbb\xbfdata: a\n\n") == [ServerSentEvent("a")]
    decoder.end_of_stream()
    assert decoder.feed(b"\xef\xbb\xbfdata: b\n\n") == [ServerSentEvent("b")]


# -- properties -----------------------------------------------------------------------

line_free = st.text().filter(lambda s: "\r" not in s and "\n" not in s)
events_strategy = st.builds(
    ServerSentEvent,
    data=st.text(),
    event=st.none() | line_free,
    id=st.none() | line_free.filter(lambda s: "\0" not in s),
    retry=st.none() | st.integers(min_value=0, max_value=2**63),
    comment=st.none() | st.text(),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def expected(events: list[ServerSentEvent]) -> list[ServerSentEvent]:
    """What a conformant parser gives back for `events`."""
    result = []
    last_id = ""
    for event in events:
        if event.id is not None:
            last_id = event.id
        assert event.data is not None
        data = event.data.replace("\r\n", "\n").replace("\r", "\n")
        result.append(
            ServerSentEvent(data, event=event.event or None, id=last_id or None, retry=event.retry)
        )
    return result


@given(st.lists(events_strategy, max_size=8), st.lists(st.integers(min_value=0), max_size=12))
def test_roundtrip_through_any_split(events: list[ServerSentEvent], cuts: list[int]) -> None:
    stream = b"".join(event.encode() for event in events)
    assert decode(*split(stream, cuts)) == expected(events)


LINES = [b"", b"data", b"data: x", b"data:  y", b"id: 1", b"id: 2\0", b"id", b"event: e"]
LINES += [b"retry: 5", b"retry: z", b": c", b"\xef\xbb\xbfdata: b", b"dat\xc3\xa9: z", b"data:\xc3"]


@given(
    st.lists(st.tuples(st.sampled_from(LINES), st.sampled_from([b"\r", b"\n", b"\r\n"]))),
    st.sampled_from([b"", b"data: tail", b"\xef\xbb\xbf"]),
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_any_stream_decodes_the_same_however_it_is_split(
    lines: list[tuple[bytes, bytes]], tail: bytes, cuts: list[int]
) -> None:
    stream = b"".join(line + end for line, end in lines) + tail
    whole = SSEDecoder()
    events = whole.feed(stream)
    for chunks in (split(stream, cuts), [stream[i : i + 1] for i in range(len(stream))]):
        parts = SSEDecoder()
        assert [e for chunk in chunks for e in parts.feed(chunk)] == events
        assert (parts.last_event_id, parts.retry) == (whole.last_event_id, whole.retry)


def decode_with_limits(chunks: list[bytes]) -> tuple[list[ServerSentEvent], str | None]:
    """Every event a small-limit decoder gives for `chunks`, and the limit it hit."""
    decoder = SSEDecoder(max_line=12, max_event=20)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        try:
            events += decoder.feed(chunk)
        except SSEDecodeError as error:
            return events + error.events, error.limit
    return events, None


@given(
    st.lists(st.tuples(st.sampled_from([*LINES, b"data: 0123456", b"x" * 13]), st.just(b"\n"))),
    st.sampled_from([b"", b"data: tail", b"y" * 20]),
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_limits_are_hit_at_the_same_place_however_the_stream_is_split(
    lines: list[tuple[bytes, bytes]], tail: bytes, cuts: list[int]
) -> None:
    stream = b"".join(line + end for line, end in lines) + tail
    whole = decode_with_limits([stream])
    assert decode_with_limits(split(stream, cuts)) == whole
    assert decode_with_limits([stream[i : i + 1] for i in range(len(stream))]) == whole
