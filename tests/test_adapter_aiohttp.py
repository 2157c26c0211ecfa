"""What only `streamfx.adapters.aiohttp` does, under aiohttp's own server on 127.0.0.1:
aiohttp's handler cancellation, quiet disconnects, sendfile, HTTP/1.0 resets, the
timing arguments, `drain_on_shutdown` and the `streamfx_errors` middleware. What every
adapter does, aiohttp's included: tests/test_adapter_contract*.py.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from streamfx import (
    BufferPolicy,
    FileRange,
    ServerSentEvent,
    SSEDecoder,
    StreamfxError,
    StreamResponse,
    UploadTooLarge,
    download,
    parse_multipart,
    reset_shutdown,
    sse,
)
from streamfx.adapters import _aiohttp_watch
from streamfx.adapters.aiohttp import (
    drain_on_shutdown,
    error_response,
    streamfx_errors,
    to_aiohttp,
)
from streamfx.broadcast import BroadcastError
from tests._client import close_all, open_raw, read_to_eof, recv_until, wait_until
from tests._servers import serve_aiohttp
from tests._stream_routes import CountedBody, once
from tests.apps.aiohttp_app import aiohttp_app
from tests.apps.asgi_app import running_tasks
from tests.apps.tally import Tally

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(
    handler: Handler,
    *,
    middlewares: Sequence[Any] = (),
    drain: bool = False,
    **options: Any,
) -> AsyncIterator[int]:
    """Run `handler` for every path and method on 127.0.0.1; yield the bound port."""
    app = web.Application(middlewares=list(middlewares))
    if drain:
        drain_on_shutdown(app)
    app.router.add_route("*", "/{tail:.*}", handler)
    async with serve_aiohttp(app, **options) as (_host, port):
        yield port


def respond_with(make: Callable[[], StreamResponse]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp(request, make())

    return handler


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


def broken_after(parts: int, log: list[str]) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        try:
            for _ in range(parts):
                yield b"row\n" * 100
            raise RuntimeError("source failed mid-stream")
        finally:
            log.append("finalized")

    return body()


# -- disconnects --------------------------------------------------------------------------


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_clients_leaving_are_no_error_with_or_without_handler_cancellation(
    handler_cancellation: bool, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Busy streams (a write notices) and idle ones (only the disconnect watch, or
    aiohttp's own cancellation, can): every body closes once, nothing is logged."""
    tally = Tally()
    app = aiohttp_app(tally, tmp_path)
    async with serve_aiohttp(app, handler_cancellation=handler_cancellation) as (_, port):
        paths = ["/forever" if i % 2 else "/sse?n=1&hold=1" for i in range(200)]
        socks = await asyncio.gather(*(open_raw(port, path) for path in paths))
        try:
            marks = [b"\n3\n" if path == "/forever" else b"data: event 0\n" for path in paths]
            await asyncio.gather(
                *(recv_until(s, mark) for s, mark in zip(socks, marks, strict=True))
            )
        finally:
            close_all(socks)
        await wait_until(lambda: tally.finalized == tally.started == 200, "every finalizer")
        await wait_until(lambda: running_tasks() == 0, "no streamfx task left")
    assert tally.closes == 100
    assert not errors_logged(caplog)  # a disconnect is not an error


async def test_a_handler_returns_quietly_when_the_client_leaves_before_the_first_chunk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    finalized = asyncio.Event()
    outcomes: list[str] = []

    async def slow_start() -> AsyncIterator[bytes]:
        started.set()
        try:
            await asyncio.Event().wait()
            yield b"never"
        finally:
            finalized.set()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = StreamResponse(200, [], slow_start())
        out = await to_aiohttp(request, response, disconnect_check=0.05)
        outcomes.append("returned")
        return out

    async with serve(handler) as port:
        with await open_raw(port, "/"):
            await asyncio.wait_for(started.wait(), 5)  # waiting for the first chunk
        await asyncio.wait_for(finalized.wait(), 5)
        await wait_until(lambda: outcomes == ["returned"], "the handler to return")
    assert not errors_logged(caplog)


async def test_disconnect_during_sendfile_returns_quietly(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    size = 8 * 2**20
    path.write_bytes(os.urandom(size))
    outcomes: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = StreamResponse(
            200, [("content-length", str(size))], once(b""), file=FileRange(path, 0, size)
        )
        try:
            out = await to_aiohttp(request, response)
        except BaseException as exc:
            outcomes.append(type(exc).__name__)
            raise
        outcomes.append("returned")
        return out

    async with serve(handler) as port:
        with await open_raw(port, "/", rcvbuf=4096) as sock:
            await recv_until(sock, b"\r\n\r\n")
        await wait_until(lambda: bool(outcomes), "the handler to end")
    assert outcomes == ["returned"]


async def test_a_handler_returns_after_its_client_is_cut_by_the_write_timeout() -> None:
    finalized = asyncio.Event()
    outcomes: list[str] = []

    async def endless() -> AsyncIterator[str]:
        try:
            while True:
                yield "y" * 1000
                await asyncio.sleep(0)
        finally:
            finalized.set()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = sse(endless(), heartbeat=None, buffer=BufferPolicy(8, "sliding"))
        out = await to_aiohttp(request, response, disconnect_check=0.05, write_timeout=0.3)
        outcomes.append("returned")
        return out

    async with serve(handler) as port:
        with await open_raw(port, "/", rcvbuf=4096):  # never reads, keeps the socket open
            await asyncio.wait_for(finalized.wait(), 10)
            await wait_until(lambda: outcomes == ["returned"], "the handler to return")


@pytest.mark.parametrize("bad", [{"write_timeout": 0}, {"disconnect_check": -1.0}])
async def test_bad_timing_arguments_are_refused(bad: dict[str, float]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        with pytest.raises(ValueError, match="must be positive"):
            await to_aiohttp(request, StreamResponse(200, [], once(b"")), **bad)
        return web.Response(text="refused")

    async with serve(handler) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
    assert reply.text == "refused"


async def test_error_after_start_resets_an_http10_connection() -> None:
    """Without chunked framing the end of a body is the end of the connection: a clean
    close would look complete, so the adapter resets it."""
    log: list[str] = []

    def make() -> StreamResponse:
        return StreamResponse(200, [], broken_after(3, log))

    async with serve(respond_with(make)) as port:
        with await open_raw(port, "/", http10=True) as sock:
            head = await recv_until(sock, b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.0 200")
            with pytest.raises(ConnectionResetError):
                await read_to_eof(sock)
    assert log == ["finalized"]


async def test_with_small_socket_buffers_the_producer_stays_close_behind_the_reader() -> None:
    """With 8 KiB socket buffers at both ends (the server's set by the handler, which
    only aiohttp lets reach the socket), a suspend producer never runs further ahead of
    what the client has read than the buffer, one batch in hand, aiohttp's and
    asyncio's write buffers (64 KiB each) and the kernels' few KiB: checked at every
    event it produces (1 KB each)."""
    capacity, total = 16, 3000
    tally = Tally()

    async def events() -> AsyncIterator[str]:
        for number in range(total):
            tally.produce()
            yield f"{number:06d}:" + "z" * 993
            await asyncio.sleep(0)

    async def handler(request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        response = sse(events(), heartbeat=None, buffer=BufferPolicy(capacity, "suspend"))
        return await to_aiohttp(request, response)

    loop = asyncio.get_running_loop()
    decoder = SSEDecoder()
    numbers: list[int] = []
    async with serve(handler) as port:
        with await open_raw(port, "/", rcvbuf=8192, http10=True) as sock:
            await recv_until(sock, b"\r\n\r\n", piece=1)  # the head, and no more
            # the client reads nothing more until the producer has filled the buffer
            await wait_until(lambda: tally.produced > capacity, "the producer to run ahead")
            while chunk := await loop.sock_recv(sock, 4096):
                numbers += [int((event.data or "").split(":")[0]) for event in decoder.feed(chunk)]
                tally.consumed = len(numbers)
    assert numbers == list(range(total))
    assert tally.max_lead <= 2 * capacity + 160 < total / 10, tally.max_lead


# -- shutdown -----------------------------------------------------------------------------


async def test_drain_on_shutdown_ends_sse_streams_cleanly_with_a_farewell() -> None:
    outcomes: list[str] = []
    finalized = 0

    async def events() -> AsyncIterator[str]:
        nonlocal finalized
        try:
            yield "hello"
            await asyncio.Event().wait()
        finally:
            finalized += 1

    async def handler(request: web.Request) -> web.StreamResponse:
        response = sse(events(), heartbeat=None, farewell=ServerSentEvent("bye", event="close"))
        out = await to_aiohttp(request, response)
        outcomes.append("returned")
        return out

    async def listen(client: httpx.AsyncClient, url: str, ready: asyncio.Event) -> list[str]:
        decoder = SSEDecoder()
        seen: list[str] = []
        async with client.stream("GET", url) as reply:
            async for chunk in reply.aiter_raw():
                seen += [event.data or "" for event in decoder.feed(chunk)]
                if seen:
                    ready.set()
        return seen  # the body ended cleanly: no exception from httpx

    try:
        async with httpx.AsyncClient() as client:
            # Handlers still running when the grace period ends would be cancelled:
            # returning normally shows that the streams ended on purpose.
            async with serve(handler, drain=True, shutdown_timeout=30) as port:
                ready = [asyncio.Event() for _ in range(5)]
                listeners = [
                    asyncio.create_task(listen(client, f"http://127.0.0.1:{port}/", r))
                    for r in ready
                ]
                await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 5.0)
            results = await asyncio.wait_for(asyncio.gather(*listeners), 5.0)
    finally:
        reset_shutdown()
    assert results == [["hello", "bye"]] * 5
    assert outcomes == ["returned"] * 5
    assert finalized == 5


# -- zero-copy files ----------------------------------------------------------------------


@pytest.mark.parametrize(("status", "offset", "length"), [(200, 0, 300_000), (206, 1000, 5000)])
async def test_file_range_is_sent_with_sendfile(
    tmp_path: Path, status: int, offset: int, length: int
) -> None:
    path = tmp_path / "data.bin"
    data = os.urandom(300_000)
    path.write_bytes(data)
    tally = Tally()

    async def never() -> AsyncIterator[bytes]:
        tally.started += 1
        yield b"never sent"

    def make() -> StreamResponse:
        return StreamResponse(
            status,
            [("content-length", str(length)), ("content-type", "application/octet-stream")],
            CountedBody(never(), tally),
            file=FileRange(path, offset, length),
        )

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
        again = await client.get(f"http://127.0.0.1:{port}/")  # the connection is reusable
    assert reply.status_code == status
    assert reply.content == data[offset : offset + length]
    assert again.content == reply.content
    assert tally.started == 0  # the body was never iterated: the bytes went through sendfile
    assert tally.closes == 2


async def test_missing_file_before_start_becomes_500(tmp_path: Path) -> None:
    def make() -> StreamResponse:
        return StreamResponse(
            200, [("content-length", "10")], once(b""), file=FileRange(tmp_path / "gone.bin", 0, 10)
        )

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
    assert reply.status_code == 500
    assert reply.text == "Internal Server Error"


# -- SSE and the middleware ---------------------------------------------------------------


async def test_sse_events_of_each_kind_and_heartbeats() -> None:
    finalized = asyncio.Event()

    async def events() -> AsyncIterator[ServerSentEvent | str]:
        try:
            yield ServerSentEvent("hello", event="greeting", id="1")
            yield "plain"
            await asyncio.Event().wait()
        finally:
            finalized.set()

    async with (
        serve(respond_with(lambda: sse(events(), heartbeat=0.05))) as port,
        httpx.AsyncClient() as client,
    ):
        async with client.stream("GET", f"http://127.0.0.1:{port}/") as reply:
            assert reply.headers["content-type"].startswith("text/event-stream")
            decoder = SSEDecoder()
            received: list[ServerSentEvent] = []
            raw = b""
            async for chunk in reply.aiter_raw():
                raw += chunk
                received += decoder.feed(chunk)
                if raw.count(b": ping\n\n") >= 3:
                    break
        assert [(e.event, e.data, e.id) for e in received] == [
            ("greeting", "hello", "1"),
            (None, "plain", "1"),
        ]
        await asyncio.wait_for(finalized.wait(), 5)


async def test_the_middleware_answers_a_download_refused_for_its_path(tmp_path: Path) -> None:
    """A catch-all route hands the whole decoded path to `download`."""
    root = tmp_path / "files"
    root.mkdir()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp(request, download(request.path.lstrip("/"), root=root))

    async with serve(handler, middlewares=[streamfx_errors]) as port, httpx.AsyncClient() as c:
        outside = await c.get(f"http://127.0.0.1:{port}/..%2F..%2Fetc%2Fpasswd")
    assert outside.status_code == 403
    assert outside.text == "Forbidden"


async def test_the_middleware_maps_upload_errors_raised_directly() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        parts = parse_multipart(
            request.content.iter_any(),
            request.headers.get("Content-Type"),
            max_size=100,
            max_part_size=100,
            max_parts=1,
        )
        async with parts:
            async for part in parts:
                await part.read()
        return web.Response(text="stored")

    boundary = "streamfx-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="doc"; filename="a.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\n{'z' * 500}\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with serve(handler, middlewares=[streamfx_errors]) as port, httpx.AsyncClient() as c:
        reply = await c.post(f"http://127.0.0.1:{port}/", content=body, headers=headers)
    assert reply.status_code == 413
    assert reply.headers["content-type"].startswith("text/plain")
    assert "100" in reply.text


async def test_error_response_and_the_middleware_answer_any_streamfx_error() -> None:
    """``error_response(exc)`` in a handler, and the middleware for what a handler lets
    out: a closed hub (503), an application's own `StreamfxError` with its headers; any
    other error is left to aiohttp (its own 500)."""
    quota = StreamfxError("user 7 over quota", status_code=429, headers={"Retry-After": "60"})

    async def caught(request: web.Request) -> web.StreamResponse:
        try:
            raise BroadcastError("this hub is closed")
        except StreamfxError as exc:
            return error_response(exc)

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/caught":
            return await caught(request)
        raise quota

    async with serve(handler, middlewares=[streamfx_errors]) as port, httpx.AsyncClient() as c:
        closed = await c.get(f"http://127.0.0.1:{port}/caught")
        limited = await c.get(f"http://127.0.0.1:{port}/quota")
    assert (closed.status_code, closed.text) == (503, "Service Unavailable")
    assert (limited.status_code, limited.text) == (429, "Too Many Requests")
    assert limited.headers["retry-after"] == "60"
    assert "user 7" not in limited.text


def test_error_response_closes_the_connection_after_an_upload_error() -> None:
    reply = error_response(UploadTooLarge("the upload is larger than 10 bytes"))
    assert (reply.status, reply.text) == (413, "the upload is larger than 10 bytes")
    assert reply.keep_alive is False
    assert error_response(RuntimeError("secret /srv/x")).text == "Internal Server Error"


# -- what an idle stream holds (issue 15: idle cost per stream) -------------------------


async def _idle_streams(
    count: int, run: Callable[[list[asyncio.Task[Any]]], Awaitable[None]]
) -> None:
    """Serve `count` idle SSE streams (their headers received) and call `run` with the
    handlers' tasks while they are idle; the clients leave afterwards."""
    handlers: list[asyncio.Task[Any]] = []
    finalized = 0

    async def silent() -> AsyncIterator[str]:
        nonlocal finalized
        try:
            await asyncio.get_running_loop().create_future()
            yield "never"
        finally:
            finalized += 1

    async def handler(request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        return await to_aiohttp(request, sse(silent()), disconnect_check=0.05)

    async with serve(handler) as port:
        socks = await asyncio.gather(*(open_raw(port, "/") for _ in range(count)))
        try:
            await asyncio.gather(*(recv_until(sock, b":\n\n") for sock in socks))
            await run(handlers)
        finally:
            close_all(socks)
        await wait_until(lambda: finalized == count, "every source finalized")


async def test_idle_streams_hold_no_loop_timer_of_their_own() -> None:
    """The disconnect check of an idle stream was a `TimerHandle` per stream, re-armed
    every `disconnect_check` (a handle, a context and a bound method each: ~280 bytes
    per idle connection); it is a lazy deadline behind the loop's one shared timer."""
    loop = asyncio.get_running_loop()

    def timers() -> int:
        """Loop timers armed by streamfx (aiohttp keeps one per connection of its own)."""
        scheduled = loop._scheduled  # type: ignore[attr-defined]
        return len([t for t in scheduled if not t.cancelled() and _by_streamfx(t._callback)])

    before = timers()

    async def check(handlers: list[asyncio.Task[Any]]) -> None:
        assert timers() - before <= 1  # the loop's shared `Deadlines` timer

    await _idle_streams(50, check)


async def test_an_idle_stream_holds_no_bound_method_of_its_watch() -> None:
    """Issue 15, idle memory: the write timeout's callback was a bound method of the
    stream's watch, one more object per open stream; the watch is the callback."""

    async def check(handlers: list[asyncio.Task[Any]]) -> None:
        bound = [
            thing
            for thing in gc.get_objects()
            if isinstance(thing, types.MethodType)
            and isinstance(thing.__self__, _aiohttp_watch.DisconnectWatch)
        ]
        assert bound == []

    await _idle_streams(5, check)


def _by_streamfx(callback: Any) -> bool:
    return str(getattr(callback, "__module__", "")).startswith("streamfx.")


async def test_an_idle_stream_waits_in_one_frame_of_the_adapter() -> None:
    """Each coroutine the handler's task waits in holds its frame for the life of the
    stream (~280 bytes each): the adapter used to wait four deep (`to_aiohttp`,
    `_send`, `_write_body`, `_pump`); it waits in `to_aiohttp` alone."""

    async def check(handlers: list[asyncio.Task[Any]]) -> None:
        for task in handlers:
            names = []
            awaited: Any = task.get_coro()
            while awaited is not None:
                code = getattr(awaited, "cr_code", None) or getattr(awaited, "ag_code", None)
                if code is not None and code.co_filename.endswith("adapters/aiohttp.py"):
                    names.append(code.co_name)
                awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
            assert names == ["to_aiohttp"]

    await _idle_streams(5, check)
