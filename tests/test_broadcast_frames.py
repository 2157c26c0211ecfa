"""The hub's frames: published items are encoded by `sse()`'s rules, once, with the id
the hub assigns; control frames carry jittered retries and never break resuming."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx import ServerSentEvent, SSEDecoder
from streamfx._sse.encoder import SseEncoder
from streamfx.broadcast._frames import (
    encode_body,
    farewell_frame,
    jittered,
    overflow_frame,
    position_frame,
    reset_frame,
    retagged,
    with_id,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
items = st.one_of(
    st.text(),
    json_values,
    st.builds(
        ServerSentEvent,
        data=st.none() | st.text(),
        event=st.none() | st.sampled_from(["a", "tick"]),
        retry=st.none() | st.integers(0, 10_000),
        comment=st.none() | st.text(),
    ),
)


@given(item=items)
def test_a_published_item_is_what_sse_sends_plus_the_hub_id(item: Any) -> None:
    sent_by_sse = SseEncoder().encode([item])
    frame = with_id(encode_body(item, None, None), "7-0")
    assert frame == sent_by_sse[:-1] + b"id: 7-0\n\n"
    decoder = SSEDecoder()
    events = decoder.feed(frame)
    assert decoder.last_event_id == "7-0"
    assert [(e.data, e.event) for e in events] == [
        (e.data, e.event) for e in SSEDecoder().feed(sent_by_sse)
    ]


def test_event_names_the_type_of_any_item() -> None:
    events = SSEDecoder().feed(with_id(encode_body({"a": 1}, "update", None), "1-0"))
    assert [(e.event, e.data, e.id) for e in events] == [("update", '{"a":1}', "1-0")]


@given(base=st.integers(0, 100_000))
def test_jitter_spreads_over_one_base(base: int) -> None:
    assert base <= jittered(base) < max(2 * base, 1)


def test_control_frames() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(position_frame("5-0")) == []
    assert decoder.last_event_id == "5-0"
    [reset] = decoder.feed(reset_frame("6-0", "expired"))
    assert (reset.event, reset.data, decoder.last_event_id) == ("reset", "expired", "6-0")
    [overflow] = decoder.feed(overflow_frame(1000))
    assert overflow.event == "overflow" and overflow.retry is not None
    assert decoder.last_event_id == "6-0", "an overflow keeps the client's position"
    assert decoder.feed(farewell_frame(None, 500)) == []
    assert decoder.retry is not None and 500 <= decoder.retry < 1000
    [bye] = decoder.feed(farewell_frame(ServerSentEvent("bye", event="x", retry=100), 500))
    assert bye.retry is not None and 100 <= bye.retry < 200
    assert decoder.last_event_id == "6-0", "a farewell keeps the client's position"


@pytest.mark.parametrize("item", [b"x", bytearray(b"x"), memoryview(b"x")])
def test_bytes_are_refused(item: object) -> None:
    with pytest.raises(TypeError, match="cannot send bytes"):
        encode_body(item, None, None)


@pytest.mark.parametrize(
    "frame",
    [
        with_id(b"data: x\n", "5-0"),
        with_id(b"event: e\ndata: a\ndata: b\n", "5-0"),
        reset_frame("5-0", "lost"),
    ],
)
def test_retagged_keeps_the_event_and_gives_it_one_id(frame: bytes) -> None:
    decoded = list(SSEDecoder().feed(frame))
    again = list(SSEDecoder().feed(retagged(frame, "9-0,3-1")))
    assert [(e.event, e.data) for e in again] == [(e.event, e.data) for e in decoded]
    assert [e.id for e in again] == ["9-0,3-1"]
    assert retagged(frame, "9-0,3-1").count(b"id: ") == 1
