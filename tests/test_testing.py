"""`streamfx.testing`: endless streams read in process, stopped on purpose, finalizers run.

The apps here are what a user writes (Starlette, FastAPI, a bare `to_asgi`); the
client is `streamfx.testing`, with no server: the point of the module is to test an
endless SSE endpoint without one, where Starlette's TestClient and httpx's
ASGITransport hang.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

import streamfx
from streamfx.adapters.asgi import to_asgi
from streamfx.broadcast import Broadcast
from streamfx.testing import (
    AppDidNotReturn,
    LifespanFailed,
    StreamAborted,
    StreamTimeout,
    capture_metrics,
    connect,
    lifespan,
    open_response,
)


class Feed:
    """An endless source that records its start and its cleanup."""

    def __init__(self) -> None:
        self.started = 0
        self.finalized = asyncio.Event()

    async def ticks(self) -> AsyncIterator[dict[str, int]]:
        self.started += 1
        n = 0
        try:
            while True:
                yield {"n": n}
                n += 1
                await asyncio.sleep(0.001)
        finally:
            self.finalized.set()

    async def silence(self) -> AsyncIterator[str]:
        self.started += 1
        try:
            yield "hello"
            await asyncio.Event().wait()  # never set: an idle feed
            yield "never"  # pragma: no cover
        finally:
            self.finalized.set()


def starlette_app(feed: Feed) -> Starlette:
    async def events(request: Request) -> object:
        source = feed.silence() if "idle" in request.query_params else feed.ticks()
        return to_asgi(streamfx.sse(source, name="ticks", heartbeat=None))

    return Starlette(routes=[Route("/events", events)])


def fastapi_app(feed: Feed) -> FastAPI:
    app = FastAPI()

    @app.get("/events", response_model=None)
    async def events(idle: bool = False) -> Any:
        source = feed.silence() if idle else feed.ticks()
        return to_asgi(streamfx.sse(source, name="ticks", heartbeat=None))

    return app


APPS: list[Callable[[Feed], Any]] = [starlette_app, fastapi_app]


@pytest.mark.parametrize("make_app", APPS, ids=["starlette", "fastapi"])
async def test_an_endless_stream_is_read_then_left_and_its_finalizer_runs(
    make_app: Callable[[Feed], Any],
) -> None:
    feed = Feed()
    with capture_metrics() as metrics:
        async with connect(make_app(feed), "/events") as client:
            assert client.status == 200
            assert client.header("Content-Type") == "text/event-stream; charset=utf-8"
            events = await client.events(3)
            assert not feed.finalized.is_set(), "the stream is still open"
        assert feed.finalized.is_set(), "leaving the block ran the source's finalizer"
    assert [event.data for event in events] == ['{"n":0}', '{"n":1}', '{"n":2}']
    assert metrics.opened["sse", "ticks"] == 1
    assert metrics.active["sse", "ticks"] == 0
    assert metrics.outcomes["sse", "ticks", "closed"] == 1
    assert metrics.items["sse", "ticks"] >= 3


@pytest.mark.parametrize("make_app", APPS, ids=["starlette", "fastapi"])
async def test_an_idle_stream_times_out_then_is_left_cleanly(
    make_app: Callable[[Feed], Any],
) -> None:
    feed = Feed()
    async with connect(make_app(feed), "/events?idle=1") as client:
        assert [event.data for event in await client.events(1)] == ["hello"]
        with pytest.raises(StreamTimeout, match="got 0 events") as timed_out:
            await client.events(1, within=0.05)
        assert timed_out.value.events == []
    assert feed.finalized.is_set()


async def test_until_stops_at_the_first_accepted_event_and_reading_goes_on() -> None:
    feed = Feed()
    async with connect(starlette_app(feed), "/events") as client:
        first = await client.events(until=lambda event: event.data == '{"n":4}')
        more = await client.events(2)
    assert [event.data for event in first][-1] == '{"n":4}'
    assert len(first) == 5
    assert [event.data for event in more] == ['{"n":5}', '{"n":6}']
    assert client.decoder.last_event_id == ""


async def test_a_stream_response_is_read_directly_and_closed() -> None:
    feed = Feed()
    farewell = streamfx.ServerSentEvent("bye", event="shutdown")
    response = streamfx.sse(feed.ticks(), heartbeat=None, retry=1000, farewell=farewell)
    async with open_response(response) as client:
        assert client.status == 200
        events = await client.events(2)
    assert [event.data for event in events] == ['{"n":0}', '{"n":1}']
    assert client.decoder.retry == 1000
    assert feed.finalized.is_set()


async def test_a_finite_body_is_read_whole() -> None:
    rows = [{"id": n, "name": f"row {n}"} for n in range(1000)]
    async with open_response(streamfx.export(rows, "csv", filename="rows.csv")) as client:
        body = await client.body()
        assert client.ended
        assert await client.chunk() is None
    assert body.count(b"\r\n") == 1001
    assert client.header("content-disposition") == 'attachment; filename="rows.csv"'


async def test_head_and_request_headers_reach_the_response(tmp_path: Any) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 10)
    app = to_asgi(streamfx.download(path))
    async with connect(app, headers=[("Range", "bytes=0-9")]) as client:
        assert client.status == 206
        assert await client.body() == bytes(range(10))
    async with connect(app, method="HEAD") as client:
        assert client.header("content-length") == "2560"
        assert await client.body() == b""


async def test_an_error_before_the_response_starts_is_raised_from_connect() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise LookupError("no such route")

    with pytest.raises(LookupError, match="no such route"):
        async with connect(broken):
            pass  # pragma: no cover


async def test_an_app_that_returns_without_a_response_is_reported() -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(StreamAborted, match="without starting"):
        async with connect(silent):
            pass  # pragma: no cover


async def test_a_body_that_breaks_off_is_a_stream_aborted() -> None:
    async def rows() -> AsyncIterator[dict[str, int]]:
        yield {"n": 1}
        raise RuntimeError("database gone")

    app = to_asgi(streamfx.export(rows(), "ndjson"))
    async with connect(app) as client:
        with pytest.raises(StreamAborted) as aborted:
            await client.body()
    assert isinstance(aborted.value.__cause__, RuntimeError)


async def test_an_app_error_the_test_did_not_read_is_raised_on_leaving() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await receive()  # the request
        await receive()  # the disconnect
        raise ValueError("failed while closing")

    with pytest.raises(ValueError, match="failed while closing"):
        async with connect(app) as client:
            assert await client.chunk() == b"x"


async def test_an_app_that_ignores_the_disconnect_is_cancelled_and_reported() -> None:
    cancelled = asyncio.Event()

    async def stubborn(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await asyncio.Event().wait()  # never looks at receive()
        finally:
            cancelled.set()

    with pytest.raises(AppDidNotReturn):
        async with connect(stubborn, disconnect_timeout=0.05):
            pass
    assert cancelled.is_set()


async def test_a_client_that_does_not_read_holds_the_app_back() -> None:
    """At most `capacity` chunks wait; then the app's send blocks, as on a real socket."""
    produced = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal produced
        while True:
            produced += 1
            yield b"x" * 100

    response = streamfx.StreamResponse(200, [], endless())
    async with open_response(response, capacity=4) as client:
        assert await client.chunk() == b"x" * 100
        for _ in range(20):
            await asyncio.sleep(0)
        held = produced
        for _ in range(20):
            await asyncio.sleep(0)
        assert produced == held <= 6, "the producer waits for the reader"


async def test_capture_metrics_puts_the_previous_hook_back() -> None:
    before = streamfx.metrics.get_metrics()
    with capture_metrics() as metrics:
        assert streamfx.metrics.get_metrics() is metrics
    assert streamfx.metrics.get_metrics() is before


def test_capacity_must_be_positive() -> None:
    response = streamfx.StreamResponse(200, [], endless_bytes())

    async def run() -> None:
        async with open_response(response, capacity=0):
            pass  # pragma: no cover

    with pytest.raises(ValueError, match="capacity"):
        asyncio.run(run())


async def endless_bytes() -> AsyncIterator[bytes]:
    while True:  # pragma: no cover - never iterated
        yield b""


async def test_a_reconnect_with_the_last_event_id_misses_nothing() -> None:
    """The client's decoder keeps the id to resume from (the WHATWG reconnection rule)."""
    hub = Broadcast()

    async def job(request: Request) -> object:
        last = request.headers.get("last-event-id")
        return to_asgi(hub.sse("job", last_event_id=last, heartbeat=None))

    app = Starlette(routes=[Route("/job", job)])
    async with connect(app, "/job") as client:  # subscribed once the response started
        await hub.publish("job", "1")
        await hub.publish("job", "2")
        assert [event.data for event in await client.events(2)] == ["1", "2"]
        resume_from = client.decoder.last_event_id
    await hub.publish("job", "3")
    async with connect(app, "/job", headers=[("Last-Event-ID", resume_from)]) as client:
        await hub.publish("job", "4")
        assert [event.data for event in await client.events(2)] == ["3", "4"]
    await hub.close()


async def test_a_lifespan_app_is_started_its_state_reaches_requests_and_it_stops() -> None:
    stopped = asyncio.Event()
    hub_seen: list[Broadcast] = []

    @contextlib.asynccontextmanager
    async def lifespan_of(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with Broadcast() as hub:
            yield {"hub": hub}
        stopped.set()

    app = FastAPI(lifespan=lifespan_of)

    @app.get("/news", response_model=None)
    async def news(request: Request) -> Any:
        hub: Broadcast = request.state.hub
        hub_seen.append(hub)
        return to_asgi(hub.sse("news", heartbeat=None))

    async with lifespan(app) as state:
        async with connect(app, "/news", state=state) as client:
            await state["hub"].publish("news", "extra!")
            assert [event.data for event in await client.events(1)] == ["extra!"]
        assert hub_seen == [state["hub"]]
        assert not stopped.is_set()
    assert stopped.is_set(), "the lifespan's shutdown ran"


async def test_an_app_without_lifespan_support_runs_without_it() -> None:
    async def plain(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "no lifespan here"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with lifespan(plain) as state, connect(plain, state=state) as client:
        assert client.status == 204


async def test_a_failed_startup_is_raised() -> None:
    @contextlib.asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield  # pragma: no cover

    app = Starlette(lifespan=broken)
    with pytest.raises(LifespanFailed, match="no database"):
        async with lifespan(app):
            pass  # pragma: no cover
