"""`SseEncoder` and `data_events`: one dispatch per item type, one join per batch."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx import ServerSentEvent, SSEDecoder
from streamfx._response.json import JsonSerializer
from streamfx._sse.encoder import (
    EVENT_SUBCLASSES,
    EVENTS,
    RAW,
    STR_SUBCLASSES,
    TEXTS,
    Kind,
    SseEncoder,
)
from streamfx._sse.event import data_events, encode_event

ENCODERS = pytest.mark.parametrize(
    "encoder",
    [
        SseEncoder(json=JsonSerializer(use_orjson=True)),
        SseEncoder(json=JsonSerializer(use_orjson=False)),
    ],
    ids=["orjson", "json"],
)


class Colour(enum.StrEnum):
    RED = "red"


class Named(ServerSentEvent):
    __slots__ = ()


class Raw(bytes):
    pass


@dataclasses.dataclass
class Reading:
    sensor: str
    at: datetime.datetime


@ENCODERS
def test_each_kind_of_item_in_one_mixed_batch_in_order(encoder: SseEncoder) -> None:
    batch: list[Any] = [
        ServerSentEvent("ev", event="e", id="1"),
        "line one\nline two",
        "",
        b"event: raw\ndata: pre-encoded\n\n",
        bytearray(b"data: ba\n\n"),
        memoryview(b"data: mv\n\n"),
        Raw(b"data: sub\n\n"),
        Named("n", event="named"),
        Colour.RED,
        {"a": [1, 2.5, None, True], "b": "x\ny"},
        [1, 2],
        42,
        None,
        Reading("s1", datetime.datetime(2024, 1, 2, 3, 4, 5)),
        "plain",
        "plain",
    ]
    assert encoder.encode(batch) == (
        b"event: e\nid: 1\ndata: ev\n\n"
        b"data: line one\ndata: line two\n\n"
        b"data: \n\n"
        b"event: raw\ndata: pre-encoded\n\n"
        b"data: ba\n\n"
        b"data: mv\n\n"
        b"data: sub\n\n"
        b"event: named\ndata: n\n\n"
        b"data: red\n\n"
        b'data: {"a":[1,2.5,null,true],"b":"x\\ny"}\n\n'
        b"data: [1,2]\n\n"
        b"data: 42\n\n"
        b"data: null\n\n"
        b'data: {"sensor":"s1","at":"2024-01-02T03:04:05"}\n\n'
        b"data: plain\n\n"
        b"data: plain\n\n"
    )


@ENCODERS
def test_a_batch_is_the_events_of_its_items_joined(encoder: SseEncoder) -> None:
    batch: list[Any] = ["a", "b\rc", {"k": 1}, ServerSentEvent("e"), "d", {"k": 2}, b"data: z\n\n"]
    assert encoder.encode(batch) == b"".join(encoder.encode([item]) for item in batch)
    assert encoder.encode([]) == b""


def memoryview_of(raw: bytes) -> memoryview:
    return memoryview(raw)


@ENCODERS
@given(st.data())
def test_property_each_kind_encodes_a_run_as_its_items_joined(
    encoder: SseEncoder, data: st.DataObject
) -> None:
    samples: list[tuple[Kind, st.SearchStrategy[Any]]] = [
        (EVENTS, st.builds(ServerSentEvent, st.text(), event=st.none() | st.just("e"))),
        (EVENT_SUBCLASSES, st.builds(Named, st.text())),
        (TEXTS, st.text()),
        (STR_SUBCLASSES, st.sampled_from(list(Colour))),
        (RAW, st.binary() | st.binary().map(bytearray) | st.binary().map(memoryview_of)),
        (encoder._json_kind, json_items),
    ]
    for kind, strategy in samples:
        run = data.draw(st.lists(strategy, min_size=2, max_size=5))
        assert kind.many(run) == b"".join(map(kind.one, run))


@ENCODERS
def test_json_data_is_one_line_however_lines_are_split(encoder: SseEncoder) -> None:
    chunk = encoder.encode([{"msg": "x\u2028event: evil\u2029data: pwned\x85id: 666"}])
    text = chunk.decode()
    assert text.splitlines() == [text.removesuffix("\n\n"), ""]
    assert json.loads(text.removeprefix("data: ")) == {
        "msg": "x\u2028event: evil\u2029data: pwned\x85id: 666"
    }


@ENCODERS
def test_nan_and_infinities_are_sent_as_null(encoder: SseEncoder) -> None:
    assert encoder.encode(["fine", {"n": math.inf}, [math.nan, -math.inf]]) == (
        b'data: fine\n\ndata: {"n":null}\n\ndata: [null,null]\n\n'
    )
    assert encoder.encode([{"n": math.nan}]) == b'data: {"n":null}\n\n'


@ENCODERS
def test_unencodable_item_raises_and_returns_nothing(encoder: SseEncoder) -> None:
    with pytest.raises(TypeError, match=r"Object of type object .*serialize="):
        encoder.encode(["fine", object()])
    with pytest.raises(UnicodeEncodeError):
        encoder.encode(["\ud800"])


def test_serialize_converts_every_item_and_must_return_an_event_text_or_bytes() -> None:
    encoder = SseEncoder(lambda n: ServerSentEvent(str(n), id=str(n)) if n % 2 else str(n))
    assert encoder.encode([1, 2]) == b"id: 1\ndata: 1\n\ndata: 2\n\n"
    for bad in ({"a": 1}, 3, None):
        with pytest.raises(TypeError, match="must return a ServerSentEvent, str or bytes, not"):
            SseEncoder(lambda _item, bad=bad: bad).encode(["x"])  # type: ignore[misc]


# -- data_events is encode_event, batched ---------------------------------------------


def test_data_events_frames_each_text() -> None:
    assert data_events([]) == b""
    assert data_events(["a", "", "b"]) == b"data: a\n\ndata: \n\ndata: b\n\n"
    assert data_events(["a\r\nb", "c"]) == b"data: a\ndata: b\n\ndata: c\n\n"


@given(st.lists(st.text(), max_size=6))
def test_property_data_events_is_encode_event_of_each_text(texts: list[str]) -> None:
    assert data_events(texts) == b"".join(map(encode_event, texts))
    assert data_events(texts) == b"".join(ServerSentEvent(t).encode() for t in texts)


json_items = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
items = (
    st.text()
    | json_items
    | st.builds(ServerSentEvent, data=st.text(), event=st.none() | st.just("kind"))
)


def lines(text: str) -> str:
    """`text` as a parser gives it back: every SSE line break is a LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


@ENCODERS
@given(batch=st.lists(items, max_size=12))
def test_property_batches_decode_to_their_items(encoder: SseEncoder, batch: list[Any]) -> None:
    chunk = encoder.encode(batch)
    assert chunk == b"".join(encoder.encode([item]) for item in batch)  # lone items alike
    events = SSEDecoder().feed(chunk)
    assert len(events) == len(batch)
    for event, item in zip(events, batch, strict=True):
        if isinstance(item, ServerSentEvent):
            assert (event.data, event.event) == (lines(item.data or ""), item.event)
        elif isinstance(item, str):
            assert event.data == lines(item)
        else:
            assert json.loads(event.data or "") == item
