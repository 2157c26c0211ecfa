"""sse(): headers, defaults, item types, batching, heartbeat, drops, cleanup.

The body is driven directly (no server); timing-dependent behaviour is made
deterministic by sources that wait on an `asyncio.Event` the test sets only after it has
seen what it is checking.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import json
import math
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfx import (
    BufferPolicy,
    CircuitBreaker,
    CircuitOpenError,
    ServerSentEvent,
    SSEDecoder,
    StreamResponse,
    circuit,
    sse,
)
from streamfx.adapters.asgi import to_asgi
from streamfx.metrics import InMemoryMetrics
from tests._clock import fake_clock
from tests._json_backends import BACKENDS, json_backend
from tests._servers import serve
from tests._sources import Upstream, settle


async def items(*values: Any) -> AsyncIterator[Any]:
    for value in values:
        yield value


async def chunks_of(response: StreamResponse) -> list[bytes]:
    return [chunk async for chunk in response.body]


def decode(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)]


# -- response shape and arguments -----------------------------------------------------


async def test_status_and_headers() -> None:
    response = sse(items())
    assert response.status == 200
    assert response.headers == [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache"),
        ("x-accel-buffering", "no"),
    ]
    assert await chunks_of(response) == [b":\n\n"]


async def test_first_chunk_comes_before_the_source_produces_anything() -> None:
    started = asyncio.Event()
    never = asyncio.Event()
    cleaned = []

    async def silent() -> AsyncIterator[str]:
        try:
            started.set()
            await never.wait()
            yield "unreachable"
        finally:
            cleaned.append(True)

    response = sse(silent(), heartbeat=None)
    body = aiter(response.body)
    assert await anext(body) == b":\n\n"
    await started.wait()  # the source runs, and can never yield
    await response.aclose()
    assert cleaned == [True]


async def test_retry_is_the_first_chunk() -> None:
    assert await chunks_of(sse(items("a"), retry=2500)) == [b"retry: 2500\n\n", b"data: a\n\n"]
    assert decode([b"retry: 2500\n\n"]) == []


@pytest.mark.parametrize("heartbeat", [0, -1, float("inf"), float("nan")])
def test_bad_heartbeat_is_refused(heartbeat: float) -> None:
    with pytest.raises(ValueError, match="heartbeat must be a positive"):
        sse(items(), heartbeat=heartbeat)


@pytest.mark.parametrize("heartbeat", ["15", True])
def test_heartbeat_of_wrong_type_is_refused(heartbeat: object) -> None:
    with pytest.raises(TypeError, match="heartbeat must be a number"):
        sse(items(), heartbeat=heartbeat)  # type: ignore[arg-type]


@pytest.mark.parametrize("retry", [-1, 1.5, True])
def test_bad_retry_is_refused(retry: object) -> None:
    with pytest.raises(ValueError, match="retry must be a non-negative int"):
        sse(items(), retry=retry)  # type: ignore[arg-type]


def test_events_must_be_async_iterable() -> None:
    with pytest.raises(TypeError, match="needs an async iterable of events, not list"):
        sse(["a", "b"])  # type: ignore[arg-type]


def test_buffer_must_be_a_policy() -> None:
    with pytest.raises(TypeError, match="buffer must be a BufferPolicy"):
        sse(items(), buffer=64)  # type: ignore[arg-type]


# -- item types -----------------------------------------------------------------------


class Colour(enum.StrEnum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Hidden:
    _secret: int


async def test_each_item_type() -> None:
    source = items(
        ServerSentEvent("ev", event="e", id="1"),
        "line one\nline two",
        b"event: raw\ndata: pre-encoded\n\n",
        {"a": [1, 2.5, None, True], "b": "x\ny"},
        [1, 2],
        42,
        None,
        Colour.RED,
        "",
    )
    chunks = await chunks_of(sse(source))
    body = b"".join(chunks[1:])
    assert body == (
        b"event: e\nid: 1\ndata: ev\n\n"
        b"data: line one\ndata: line two\n\n"
        b"event: raw\ndata: pre-encoded\n\n"
        b'data: {"a":[1,2.5,null,true],"b":"x\\ny"}\n\n'
        b"data: [1,2]\n\n"
        b"data: 42\n\n"
        b"data: null\n\n"
        b"data: red\n\n"
        b"data: \n\n"
    )


async def test_json_is_utf8_not_escaped() -> None:
    assert await chunks_of(sse(items({"k": "é✓"}))) == [b":\n\n", 'data: {"k":"é✓"}\n\n'.encode()]


async def test_json_that_orjson_refuses_goes_to_json() -> None:
    chunks = await chunks_of(sse(items({1: 2**70})))
    assert chunks[1] == b'data: {"1":1180591620717411303424}\n\n'


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test runs as on an install with orjson, then as on one without it."""
    yield from json_backend(request.param, monkeypatch)


ALIKE = [
    {"k": "é✓", "n": [1, 2.5, None]},
    "x",
    [True],
    {"n": 2**70},
    {1: "a", None: "b", False: "c"},
    datetime.datetime(1890, 1, 1, tzinfo=ZoneInfo("Europe/Amsterdam")),
    uuid.UUID(int=7),
    Colour.RED,
    Point(1, 2),
    Hidden(1),
]
ALIKE_BODY = (
    b':\n\ndata: {"k":"\xc3\xa9\xe2\x9c\x93","n":[1,2.5,null]}\n\n'
    b"data: x\n\n"
    b"data: [true]\n\n"
    b'data: {"n":1180591620717411303424}\n\n'
    b'data: {"1":"a","null":"b","false":"c"}\n\n'
    b'data: "1890-01-01T00:00:00+00:19:32"\n\n'
    b'data: "00000000-0000-0000-0000-000000000007"\n\n'
    b"data: red\n\n"
    b'data: {"x":1,"y":2}\n\n'
    b'data: {"_secret":1}\n\n'
)


async def test_json_items_are_the_same_with_and_without_orjson(backend: str) -> None:
    assert b"".join(await chunks_of(sse(items(*ALIKE)))) == ALIKE_BODY


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_nan_and_infinity_are_sent_as_null_never_as_invalid_json(
    backend: str, value: float
) -> None:
    response = sse(items("ok", {"n": value}, [value]), heartbeat=None, buffer=BufferPolicy(1))
    assert b"".join(await chunks_of(response)) == (
        b':\n\ndata: ok\n\ndata: {"n":null}\n\ndata: [null]\n\n'
    )


async def test_line_separators_in_json_cannot_inject_fields_for_a_line_splitting_client(
    backend: str,
) -> None:
    """httpx's ``aiter_lines`` splits like `str.splitlines`, on U+2028, U+2029, U+0085
    too; a JSON string holding them must still arrive as one ``data:`` line."""
    hostile = {"note": "a\u2028event: admin\u2029id: 999\x85data: forged", "n": 1}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await to_asgi(sse(items(hostile, "after"), heartbeat=None))(scope, receive, send)

    async with (
        serve(app) as (host, port),
        httpx.AsyncClient() as client,
        client.stream("GET", f"http://{host}:{port}/") as reply,
    ):
        lines = [line async for line in reply.aiter_lines()]
    assert lines == [
        ":",
        "",
        'data: {"note":"a\\u2028event: admin\\u2029id: 999\\u0085data: forged","n":1}',
        "",
        "data: after",
        "",
    ]
    assert json.loads(lines[2].removeprefix("data: ")) == hostile


async def test_str_batches_with_and_without_line_breaks() -> None:
    values = ["a", "b\nc", "", "d\re", "f"]
    chunks = await chunks_of(sse(items(*values)))
    assert len(chunks) == 2
    assert decode(chunks) == [ServerSentEvent(v.replace("\r", "\n")) for v in values]
    plain = await chunks_of(sse(items("a", "", "b")))
    assert plain == [b":\n\n", b"data: a\n\ndata: \n\ndata: b\n\n"]


async def test_serialize_converts_every_item() -> None:
    def to_event(point: Point) -> ServerSentEvent | str | bytes:
        if point.x == 0:
            return f"origin {point.y}"
        if point.x == 1:
            return b"data: raw\n\n"
        return ServerSentEvent(f"{point.x},{point.y}", event="point")

    chunks = await chunks_of(sse(items(Point(0, 1), Point(1, 0), Point(2, 3)), serialize=to_event))
    assert decode(chunks) == [
        ServerSentEvent("origin 1"),
        ServerSentEvent("raw"),
        ServerSentEvent("2,3", event="point"),
    ]


async def test_serialize_must_return_an_event_str_or_bytes() -> None:
    response = sse(items(1), serialize=lambda item: item)
    with pytest.raises(TypeError, match="must return a ServerSentEvent, str or bytes, not int"):
        await chunks_of(response)


async def test_item_that_is_not_json_serializable_raises_after_earlier_events() -> None:
    body = aiter(sse(items("ok", object()), heartbeat=None, buffer=BufferPolicy(1)).body)
    assert await anext(body) == b":\n\n"
    assert await anext(body) == b"data: ok\n\n"
    with pytest.raises(TypeError, match=r"Object of type object .*pass serialize= to turn"):
        await anext(body)


async def test_source_error_is_raised_after_the_events_before_it(
    metrics: InMemoryMetrics,
) -> None:
    async def failing() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        raise RuntimeError("boom")

    seen: list[bytes] = []

    async def drain() -> None:
        async for chunk in sse(failing()).body:
            seen.append(chunk)

    with pytest.raises(RuntimeError, match="boom"):
        await drain()
    assert decode(seen) == [ServerSentEvent("a"), ServerSentEvent("b")]
    assert metrics.outcomes["sse", "", "error"] == 1


# -- ending on an error: on_error and an open circuit ---------------------------------


async def failing(*values: str, error: Exception) -> AsyncIterator[str]:
    for value in values:
        yield value
    raise error


def open_breaker(reset_timeout: float = 30.0) -> CircuitBreaker:
    """A breaker opened by one failure at a clock that stands still."""
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=reset_timeout, clock=lambda: 100.0)
    breaker.after_stream(breaker.before_stream(), RuntimeError("down"), completed=False)
    assert breaker.state == "open"
    return breaker


async def test_on_error_turns_a_source_error_into_a_final_event_and_a_clean_end(
    metrics: InMemoryMetrics,
) -> None:
    error = RuntimeError("boom")
    seen: list[Exception] = []

    def on_error(exc: Exception) -> ServerSentEvent:
        seen.append(exc)
        return ServerSentEvent(str(exc), event="error")

    response = sse(failing("a", "b", error=error), heartbeat=None, on_error=on_error)
    chunks = await chunks_of(response)  # ends without raising
    assert decode(chunks) == [
        ServerSentEvent("a"),
        ServerSentEvent("b"),
        ServerSentEvent("boom", event="error"),
    ]
    assert chunks[-1] == b"event: error\ndata: boom\n\n", "the final event is its own chunk"
    assert seen == [error], "called once, with the source's own exception"
    assert metrics.outcomes["sse", "", "error"] == 1, "the source did fail"


async def test_on_error_does_not_cover_an_item_that_cannot_be_encoded() -> None:
    called: list[Exception] = []

    def on_error(exc: Exception) -> ServerSentEvent:
        called.append(exc)
        return ServerSentEvent("never")

    response = sse(items("ok", object()), heartbeat=None, buffer=BufferPolicy(1), on_error=on_error)
    body = aiter(response.body)
    assert await anext(body) == b":\n\n"
    assert await anext(body) == b"data: ok\n\n"
    with pytest.raises(TypeError, match="Object of type object"):
        await anext(body)
    assert called == []


def raising_handler(exc: Exception) -> ServerSentEvent:
    raise ValueError("the handler broke")


def wrong_type_handler(exc: Exception) -> ServerSentEvent:
    return "not an event"  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("handler", "logged"),
    [(raising_handler, "the handler broke"), (wrong_type_handler, "must return a ServerSentEvent")],
)
async def test_an_on_error_that_fails_is_logged_and_the_stream_is_cut_as_without_it(
    handler: Any, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = sse(failing("a", error=RuntimeError("boom")), heartbeat=None, on_error=handler)
    seen: list[bytes] = []
    with pytest.raises(RuntimeError, match="boom"):
        async for chunk in response.body:
            seen.append(chunk)
    assert decode(seen) == [ServerSentEvent("a")]
    assert [r.name for r in caplog.records] == ["streamfx.sse"]
    assert logged in caplog.text
    assert "boom" in caplog.text, "the log names the source's error too"


def test_on_error_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_error must be callable"):
        sse(items(), on_error="oops")  # type: ignore[arg-type]


async def test_an_open_circuit_at_the_start_sends_its_retry_after_and_ends_cleanly(
    metrics: InMemoryMetrics,
) -> None:
    breaker = open_breaker(reset_timeout=12.5)
    response = sse(circuit(items("never"), breaker), heartbeat=None, retry=500)
    chunks = await chunks_of(response)  # ends without raising
    assert chunks == [b"retry: 500\n\n", b"retry: 12500\n\n"]
    assert decode(chunks) == []
    assert metrics.outcomes["sse", "", "error"] == 1


async def test_a_half_open_circuit_with_no_trial_slot_asks_for_at_least_a_second() -> None:
    breaker = open_breaker(reset_timeout=1.0)
    clock = [100.0]
    breaker._clock = lambda: clock[0]
    clock[0] = 101.0  # the timeout passed: half-open
    trial = breaker.before_stream()  # takes the one trial slot
    response = sse(circuit(items("never"), breaker), heartbeat=None)
    assert await chunks_of(response) == [b":\n\n", b"retry: 1000\n\n"]
    breaker.after_stream(trial, None, completed=True)


async def test_a_circuit_open_error_after_the_first_item_is_an_ordinary_error() -> None:
    late = failing("a", error=CircuitOpenError("other", 5.0))
    seen: list[bytes] = []
    with pytest.raises(CircuitOpenError):
        async for chunk in sse(late, heartbeat=None).body:
            seen.append(chunk)
    assert decode(seen) == [ServerSentEvent("a")]


async def test_on_error_and_an_open_circuit_through_uvicorn() -> None:
    """A real server and client: both ends are clean (the chunked body terminates), and
    without on_error the same failure aborts the connection, as before."""
    breaker = open_breaker(reset_timeout=3.0)

    def on_error(exc: Exception) -> ServerSentEvent:
        return ServerSentEvent(f"failed: {exc}", event="error")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/handled":
            response = sse(failing("a", error=RuntimeError("boom")), on_error=on_error)
        elif path == "/cut":
            response = sse(failing("a", error=RuntimeError("boom")))
        else:
            response = sse(circuit(items("never"), breaker))
        await to_asgi(response)(scope, receive, send)

    async with serve(app) as (host, port), httpx.AsyncClient() as client:
        handled = await client.get(f"http://{host}:{port}/handled")
        assert handled.status_code == 200
        assert decode([handled.content]) == [
            ServerSentEvent("a"),
            ServerSentEvent("failed: boom", event="error"),
        ]
        opened = await client.get(f"http://{host}:{port}/circuit")
        assert opened.status_code == 200
        assert opened.content == b":\n\nretry: 3000\n\n"
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.get(f"http://{host}:{port}/cut")


# -- batching -------------------------------------------------------------------------


async def test_fast_source_goes_out_in_few_chunks_holding_many_events() -> None:
    count = 2000
    source = items(*(f"event {i}" for i in range(count)))
    chunks = await chunks_of(sse(source, buffer=BufferPolicy(256, "suspend")))
    assert decode(chunks) == [ServerSentEvent(f"event {i}") for i in range(count)]
    event_chunks = chunks[1:]
    assert len(event_chunks) <= count // 256 + 2
    per_chunk = [chunk.count(b"data: ") for chunk in event_chunks]
    assert all(n >= 255 for n in per_chunk[:-1]), per_chunk


async def test_source_ahead_of_the_client_is_batched_with_default_buffer() -> None:
    chunks = await chunks_of(sse(items(*(str(i) for i in range(50)))))
    assert chunks[0] == b":\n\n"
    assert len(chunks) == 2
    assert decode(chunks) == [ServerSentEvent(str(i)) for i in range(50)]


async def test_lone_event_leaves_at_once() -> None:
    resume = asyncio.Event()

    async def one_then_wait() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent("first", id="1")
        await resume.wait()
        yield ServerSentEvent("second", id="2")

    response = sse(one_then_wait(), heartbeat=None)
    body = aiter(response.body)
    assert await anext(body) == b":\n\n"
    # The source is now blocked until `resume` is set: the event left without company.
    assert await anext(body) == b"id: 1\ndata: first\n\n"
    resume.set()
    assert await anext(body) == b"id: 2\ndata: second\n\n"
    with pytest.raises(StopAsyncIteration):
        await anext(body)


# -- heartbeat ------------------------------------------------------------------------


async def test_heartbeat_comment_during_silence() -> None:
    resume = asyncio.Event()

    async def pausing() -> AsyncIterator[str]:
        yield "before"
        await resume.wait()
        yield "after"

    body = aiter(sse(pausing(), heartbeat=0.01).body)
    assert await anext(body) == b":\n\n"
    assert await anext(body) == b"data: before\n\n"
    # Nothing can come now but a heartbeat: the source waits for `resume`.
    assert await anext(body) == b": ping\n\n"
    assert await anext(body) == b": ping\n\n"
    resume.set()
    rest = [chunk async for chunk in body]
    assert set(rest[:-1]) <= {b": ping\n\n"}
    assert rest[-1] == b"data: after\n\n"
    assert decode([b": ping\n\n"]) == []


async def test_no_heartbeat_when_disabled() -> None:
    never = asyncio.Event()
    cleaned = []

    async def silent() -> AsyncIterator[str]:
        try:
            await never.wait()
            yield "unreachable"
        finally:
            cleaned.append(True)

    response = sse(silent(), heartbeat=None)
    body = aiter(response.body)
    assert await anext(body) == b":\n\n"
    # A beat would have to come within 0.05 s if one were due every 0.05 s or less; with
    # heartbeat=None none comes at all. Cancelling the wait closes the body.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(body), 0.05)
    assert cleaned == [True]


# -- drops, metrics, cleanup ----------------------------------------------------------


async def test_sliding_buffer_drops_oldest_and_counts_drops(metrics: InMemoryMetrics) -> None:
    count = 500
    produced = asyncio.Event()

    async def feed() -> AsyncIterator[str]:
        for i in range(count):
            yield str(i)
        produced.set()

    body = aiter(sse(feed(), name="feed").body)
    chunks = [await anext(body), await anext(body)]  # the opening, then a first batch
    await produced.wait()  # the client is away (not reading) while the rest arrives
    chunks += [chunk async for chunk in body]
    delivered = [int(event.data or "") for event in decode(chunks)]
    dropped = count - len(delivered)
    assert dropped > 0
    assert delivered == sorted(delivered)
    assert delivered[-1] == count - 1  # the newest event is never the one dropped
    # The default buffer holds 64 events: a full buffer leaves as one chunk of 64.
    assert max(chunk.count(b"data: ") for chunk in chunks) == 64
    assert metrics.dropped["sse", "feed"] == dropped
    assert metrics.items["sse", "feed"] == len(delivered)
    assert metrics.outcomes["sse", "feed", "completed"] == 1


async def test_custom_buffer_policy_is_used(metrics: InMemoryMetrics) -> None:
    count = 500
    source = items(*(str(i) for i in range(count)))
    chunks = await chunks_of(sse(source, buffer=BufferPolicy(1000, "sliding")))
    assert len(decode(chunks)) == count
    assert metrics.total("dropped") == 0


async def test_early_close_runs_source_cleanup(metrics: InMemoryMetrics) -> None:
    cleaned = []

    async def endless() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0)
        finally:
            cleaned.append(True)

    response = sse(endless(), name="live")
    body = aiter(response.body)
    await anext(body)
    assert b"data: 0\n\n" in await anext(body)
    await response.aclose()
    assert cleaned == [True]
    assert metrics.active["sse", "live"] == 0
    assert metrics.outcomes["sse", "live", "closed"] == 1


# -- property -------------------------------------------------------------------------

line_free = st.text().filter(lambda s: "\r" not in s and "\n" not in s)
any_item = st.one_of(
    st.text(),
    st.dictionaries(st.text(), st.integers() | st.text() | st.none(), max_size=3),
    st.builds(
        ServerSentEvent,
        data=st.text(),
        event=st.none() | line_free.filter(bool),
        id=st.none() | line_free.filter(lambda s: "\0" not in s),
    ),
)


def expected_events(values: list[Any]) -> list[ServerSentEvent]:
    result = []
    last_id = ""
    for value in values:
        if isinstance(value, ServerSentEvent):
            last_id = value.id if value.id is not None else last_id
            data, event = value.data or "", value.event
        elif isinstance(value, str):
            data, event = value, None
        else:
            data, event = json.dumps(value, separators=(",", ":"), ensure_ascii=False), None
            for char in "\u2028\u2029\x85":
                data = data.replace(char, f"\\u{ord(char):04x}")
        data = data.replace("\r\n", "\n").replace("\r", "\n")
        result.append(ServerSentEvent(data, event=event, id=last_id or None))
    return result


@settings(max_examples=50, deadline=None)
@given(st.lists(any_item, max_size=40), st.integers(min_value=1, max_value=8))
def test_body_decodes_to_the_items(values: list[Any], capacity: int) -> None:
    async def run() -> list[bytes]:
        response = sse(items(*values), buffer=BufferPolicy(capacity, "suspend"))
        return await chunks_of(response)

    assert decode(asyncio.run(run())) == expected_events(values)


# -- what an idle stream holds (issue 15: idle cost per stream) -------------------------


async def silent() -> AsyncIterator[str]:
    await asyncio.get_running_loop().create_future()
    yield "never"


async def test_idle_streams_share_one_heartbeat_timer_and_keep_their_beat() -> None:
    """A timer per idle stream (armed by each wait for the heartbeat) cost a
    `TimerHandle`, a context and, under uvloop, a libuv timer per connection; the
    streams' silences are lazy deadlines behind the loop's one timer now."""
    loop = asyncio.get_running_loop()
    timers_before = [t for t in loop._scheduled if not t.cancelled()]  # type: ignore[attr-defined]
    bodies = [aiter(sse(silent(), heartbeat=0.05 + n / 1000).body) for n in range(100)]
    for body in bodies:
        assert await anext(body) == b":\n\n"
    waits = [asyncio.ensure_future(anext(body)) for body in bodies]
    await asyncio.sleep(0)
    timers = [t for t in loop._scheduled if not t.cancelled()]  # type: ignore[attr-defined]
    assert len(timers) - len(timers_before) <= 1
    async with asyncio.timeout(5):
        assert await asyncio.gather(*waits) == [b": ping\n\n"] * 100
    for body in bodies:
        await body.aclose()  # type: ignore[attr-defined]


async def test_the_body_is_the_engines_own_generator_with_no_wrapper() -> None:
    """The ending of a failed source (`on_error`, an open circuit) is the engine's
    `last_word`: no second generator per stream wraps the body (~600 bytes each)."""
    for response in (sse(silent()), sse(silent(), on_error=lambda exc: ServerSentEvent("x"))):
        body = response.body
        assert body.ag_code.co_name == "_run"  # type: ignore[attr-defined]
        assert body.ag_code.co_filename.endswith("_response/engine.py")  # type: ignore[attr-defined]
        await body.aclose()  # type: ignore[attr-defined]


async def test_the_default_buffer_pauses_a_stalled_client_s_source_after_a_quarter_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default `stall_after` (issue 15, readers): a body away in a write that never
    returns has its source pulled to fill the 64 events it holds, then for a quarter
    of a second of drops, and no more (at 1 s a slow or stalled client was pulled for
    each published event four times as long)."""
    clock = fake_clock(monkeypatch)
    upstream = Upstream()
    body = sse(upstream.source(), heartbeat=None).body.__aiter__()
    await anext(body)  # the opening comment
    await upstream.publish(1)
    await anext(body)  # event 0; the body is now away (this test never resumes it)
    await upstream.publish(64 + 10)  # fills the buffer, then ten drops start the clock
    assert len(upstream.pulled) == upstream.published, "pulled and dropped while full"
    clock.advance(0.25)
    await settle()  # the stall watch looks: still away
    await upstream.publish(1)  # pulled and held in hand; the producer pauses
    await upstream.publish(20)
    assert len(upstream.pulled) == upstream.published - 20, "not pulled while paused"
    await body.aclose()  # type: ignore[attr-defined]
