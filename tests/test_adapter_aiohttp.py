"""`streamfx.adapters.aiohttp.to_aiohttp` under aiohttp's own server on 127.0.0.1.

Every test starts a real `web.AppRunner` + `web.TCPSite` on a free port and talks to it
with httpx or with raw sockets (for disconnects, HTTP/1.0 and slow readers).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from aiohttp import web

from streamfx import (
    BufferPolicy,
    FileRange,
    ServerSentEvent,
    SSEDecoder,
    StreamResponse,
    download,
    export,
    parse_multipart,
    reset_shutdown,
    sse,
)
from streamfx.adapters.aiohttp import (
    drain_on_shutdown,
    multipart_parts,
    streamfx_errors,
    to_aiohttp,
)
from streamfx.metrics import InMemoryMetrics, set_metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(
    handler: Handler,
    *,
    handler_cancellation: bool = False,
    middlewares: Sequence[Any] = (),
    shutdown_timeout: float = 2.0,
    drain: bool = False,
) -> AsyncIterator[int]:
    """Run `handler` for every path and method on 127.0.0.1; yield the bound port."""
    app = web.Application(middlewares=list(middlewares))
    if drain:
        drain_on_shutdown(app)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=handler_cancellation,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def respond_with(make: Callable[[], StreamResponse]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp(request, make())

    return handler


async def raw_request(
    port: int,
    request: bytes,
    *,
    rcvbuf: int | None = None,
    limit: int = 2**16,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a socket, send `request`, read the response head; return it with the streams."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with suppress(ConnectionError):
        await writer.wait_closed()


async def eventually(condition: Callable[[], bool], within: float) -> bool:
    """Poll `condition` until it holds or `within` seconds pass; return its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            return condition()
        await asyncio.sleep(0.01)
    return True


async def read_streamed(client: httpx.AsyncClient, url: str) -> bytes:
    async with client.stream("GET", url) as reply:
        return b"".join([chunk async for chunk in reply.aiter_bytes()])


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    received = b""
    while chunk := await reader.read(65536):
        received += chunk
    return received


def get(path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def streamfx_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("streamfx.") and not t.done()]


def chunks_body(parts: Sequence[bytes], log: list[str]) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        log.append("started")
        try:
            for part in parts:
                yield part
        finally:
            log.append("finalized")

    return body()


# -- plain bodies ---------------------------------------------------------------------


async def test_body_without_length_goes_out_chunked_and_is_closed() -> None:
    log: list[str] = []
    parts = [b"alpha,", b"", b"beta,", b"gamma"]

    def make() -> StreamResponse:
        return StreamResponse(200, [("content-type", "text/plain")], chunks_body(parts, log))

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
    assert reply.status_code == 200
    assert reply.headers["transfer-encoding"] == "chunked"
    assert reply.content == b"alpha,beta,gamma"
    assert log == ["started", "finalized"]


async def test_content_length_is_respected() -> None:
    log: list[str] = []
    parts = [b"x" * 1000, b"y" * 24]

    def make() -> StreamResponse:
        return StreamResponse(200, [("content-length", "1024")], chunks_body(parts, log))

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
    assert reply.headers["content-length"] == "1024"
    assert "transfer-encoding" not in reply.headers
    assert reply.content == b"x" * 1000 + b"y" * 24
    assert log == ["started", "finalized"]


async def test_head_sends_headers_only_and_never_iterates_the_body() -> None:
    log: list[str] = []

    def make() -> StreamResponse:
        return StreamResponse(200, [("content-length", "5")], chunks_body([b"hello"], log))

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        reply = await client.head(f"http://127.0.0.1:{port}/")
    assert reply.status_code == 200
    assert reply.headers["content-length"] == "5"
    assert reply.content == b""
    assert log == []


async def test_for_request_sees_method_and_headers() -> None:
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def answer(method: str, headers: Sequence[tuple[str, str]]) -> StreamResponse:
        seen.append((method, list(headers)))
        probe = dict((k.lower(), v) for k, v in headers)["x-probe"]
        return StreamResponse(200, [], chunks_body([probe.encode()], []))

    def make() -> StreamResponse:
        return StreamResponse(500, [], chunks_body([], []), respond_to=answer)

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/", headers={"X-Probe": "here"})
    assert reply.status_code == 200
    assert reply.content == b"here"
    assert seen[0][0] == "GET"


class CountingBody:
    """A body that is its own iterator and counts how often it is closed."""

    def __init__(self, chunks: int, fail_at: int | None = None) -> None:
        self.left = chunks
        self.fail_at = fail_at
        self.sent = 0
        self.closes = 0

    def __aiter__(self) -> CountingBody:
        return self

    async def __anext__(self) -> bytes:
        if self.fail_at is not None and self.sent == self.fail_at:
            raise RuntimeError("body failed")
        if self.sent == self.left:
            raise StopAsyncIteration
        self.sent += 1
        return b"chunk\n"

    async def aclose(self) -> None:
        self.closes += 1


@pytest.mark.parametrize(
    ("method", "fail_at", "status"),
    [("GET", None, 200), ("HEAD", None, 200), ("GET", 0, 500), ("GET", 2, None)],
    ids=["complete", "head", "error-before-start", "error-after-start"],
)
async def test_the_body_is_closed_exactly_once(
    method: str, fail_at: int | None, status: int | None
) -> None:
    bodies: list[CountingBody] = []

    def make() -> StreamResponse:
        bodies.append(CountingBody(5, fail_at))
        return StreamResponse(200, [], bodies[-1])

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{port}/"
        if fail_at == 2:
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await client.request(method, url)
        else:
            assert (await client.request(method, url)).status_code == status
    [body] = bodies
    assert body.closes == 1


async def test_an_error_from_for_request_is_answered_and_the_body_closed() -> None:
    bodies: list[CountingBody] = []

    def answer(method: str, headers: Sequence[tuple[str, str]]) -> StreamResponse:
        raise Forbidden("the file went away")

    def make() -> StreamResponse:
        bodies.append(CountingBody(3))
        return StreamResponse(200, [], bodies[-1], respond_to=answer)

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
    assert reply.status_code == 403
    assert reply.text == "Forbidden"
    [body] = bodies
    assert (body.sent, body.closes) == (0, 1)


# -- failures -------------------------------------------------------------------------


class Forbidden(Exception):
    status = 403


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        (RuntimeError("database exploded: secret detail"), 500, "Internal Server Error"),
        (ConnectionRefusedError("db down"), 500, "Internal Server Error"),
        (Forbidden("not yours: /srv/secret"), 403, "Forbidden"),
    ],
)
async def test_error_before_the_first_chunk_becomes_a_plain_status(
    error: Exception, status: int, text: str
) -> None:
    log: list[str] = []

    async def failing() -> AsyncIterator[bytes]:
        try:
            raise error
            yield b""  # pragma: no cover - makes this an async generator
        finally:
            log.append("finalized")

    def make() -> StreamResponse:
        return StreamResponse(200, [("content-type", "text/csv")], failing())

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith("text/plain")
    assert reply.text == text
    assert log == ["finalized"]


def broken_after(parts: int, log: list[str]) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        try:
            for _ in range(parts):
                yield b"row\n" * 100
            raise RuntimeError("source failed mid-stream")
        finally:
            log.append("finalized")

    return body()


@pytest.mark.parametrize("headers", [[], [("content-length", "100000")]])
async def test_error_after_start_leaves_the_client_an_incomplete_body(
    headers: list[tuple[str, str]],
) -> None:
    log: list[str] = []

    def make() -> StreamResponse:
        return StreamResponse(200, list(headers), broken_after(3, log))

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await read_streamed(client, f"http://127.0.0.1:{port}/")
    assert log == ["finalized"]


async def test_error_after_start_resets_an_http10_connection() -> None:
    """Without chunked framing the end of a body is the end of the connection: a clean
    close would look complete, so the adapter resets it."""
    log: list[str] = []

    def make() -> StreamResponse:
        return StreamResponse(200, [], broken_after(3, log))

    async with serve(respond_with(make)) as port:
        reader, writer, head = await raw_request(port, b"GET / HTTP/1.0\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200")
        with pytest.raises(ConnectionResetError):
            await read_to_eof(reader)
        await close(writer)
    assert log == ["finalized"]


async def test_body_ending_short_of_its_content_length_is_aborted() -> None:
    def make() -> StreamResponse:
        return StreamResponse(200, [("content-length", "10")], chunks_body([b"12345"], []))

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.get(f"http://127.0.0.1:{port}/")


# -- disconnects ----------------------------------------------------------------------


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_200_clients_disconnecting_mid_stream(
    handler_cancellation: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Half the streams are busy (writes notice the disconnect), half are idle after
    their first event (only the disconnect watch, or aiohttp's cancellation, can)."""
    started = 0
    finalized = 0

    async def source(busy: bool) -> AsyncIterator[str]:
        nonlocal started, finalized
        started += 1
        try:
            yield "first"
            while busy:
                yield "x" * 200
                await asyncio.sleep(0.001)
            await asyncio.Event().wait()
        finally:
            finalized += 1

    async def handler(request: web.Request) -> web.StreamResponse:
        busy = request.path == "/busy"
        return await to_aiohttp(request, sse(source(busy), heartbeat=None))

    async def client(port: int, path: str) -> None:
        reader, writer, head = await raw_request(
            port, f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()
        )
        assert head.startswith(b"HTTP/1.1 200")
        seen = b""
        while b"data: first" not in seen:
            seen += await reader.read(4096)
        await close(writer)

    count = 200
    async with serve(handler, handler_cancellation=handler_cancellation) as port:
        paths = ["/busy" if i % 2 else "/idle" for i in range(count)]
        await asyncio.gather(*(client(port, path) for path in paths))
        assert started == count
        assert await eventually(lambda: finalized == count, within=1.0), finalized
        assert await eventually(lambda: not streamfx_tasks(), within=0.1), streamfx_tasks()
    # A disconnect is not an error: nothing was logged as one.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_disconnect_before_the_first_chunk_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
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
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get())
        await asyncio.wait_for(started.wait(), 1.0)  # waiting for the first chunk
        await close(writer)
        await asyncio.wait_for(finalized.wait(), 1.0)
        assert await eventually(lambda: outcomes == ["returned"], within=1.0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_disconnect_during_sendfile_returns_quietly(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    size = 8 * 2**20
    path.write_bytes(os.urandom(size))
    outcomes: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = StreamResponse(
            200,
            [("content-length", str(size))],
            chunks_body([], []),
            file=FileRange(path, 0, size),
        )
        try:
            out = await to_aiohttp(request, response)
        except BaseException as exc:
            outcomes.append(type(exc).__name__)
            raise
        outcomes.append("returned")
        return out

    async with serve(handler) as port:
        reader, writer, _ = await raw_request(
            port, b"GET / HTTP/1.1\r\nHost: test\r\n\r\n", rcvbuf=4096
        )
        await reader.read(65536)
        await close(writer)
        assert await eventually(lambda: bool(outcomes), within=2.0)
    assert outcomes == ["returned"]


async def test_a_client_that_stops_reading_is_cut_after_the_write_timeout() -> None:
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
        _, writer, _ = await raw_request(port, get(), rcvbuf=4096, limit=1024)
        # The client never reads again but keeps its socket open.
        await asyncio.wait_for(finalized.wait(), 3.0)
        assert await eventually(lambda: outcomes == ["returned"], within=1.0)
        await close(writer)


async def test_a_slow_client_that_keeps_reading_is_not_cut() -> None:
    total = 300

    async def handler(request: web.Request) -> web.StreamResponse:
        response = sse(
            numbered_events(total, [0]), heartbeat=None, buffer=BufferPolicy(8, "suspend")
        )
        return await to_aiohttp(request, response, disconnect_check=0.02, write_timeout=0.15)

    async with serve(handler) as port:
        reader, writer, _ = await raw_request(
            port, b"GET / HTTP/1.0\r\n\r\n", rcvbuf=4096, limit=1024
        )
        decoder = SSEDecoder()
        numbers: list[int] = []
        while chunk := await reader.read(8192):
            numbers += [int((e.data or "").split(":")[0]) for e in decoder.feed(chunk)]
            await asyncio.sleep(0.01)
        await close(writer)
    assert numbers == list(range(total))


@pytest.mark.parametrize("bad", [{"write_timeout": 0}, {"disconnect_check": -1.0}])
async def test_bad_timing_arguments_are_refused(bad: dict[str, float]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        with pytest.raises(ValueError, match="must be positive"):
            await to_aiohttp(request, StreamResponse(200, [], chunks_body([], [])), **bad)
        return web.Response(text="refused")

    async with serve(handler) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
    assert reply.text == "refused"


async def test_server_shutdown_closes_open_streams() -> None:
    finalized = 0

    async def events() -> AsyncIterator[str]:
        nonlocal finalized
        try:
            yield "hello"
            await asyncio.Event().wait()
        finally:
            finalized += 1

    async def handler(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp(request, sse(events(), heartbeat=None))

    writers: list[asyncio.StreamWriter] = []
    async with serve(handler, shutdown_timeout=0.2) as port:
        for _ in range(10):
            reader, writer, _ = await raw_request(port, get())
            writers.append(writer)
            seen = b""
            while b"data: hello" not in seen:
                seen += await reader.read(4096)
    # serve() has run the runner's cleanup: every stream was cancelled and closed.
    assert finalized == 10
    assert not streamfx_tasks()
    for writer in writers:
        await close(writer)


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


# -- zero-copy downloads --------------------------------------------------------------


@pytest.mark.parametrize(("status", "offset", "length"), [(200, 0, 300_000), (206, 1000, 5000)])
async def test_file_range_is_sent_with_sendfile(
    tmp_path: Path, status: int, offset: int, length: int
) -> None:
    path = tmp_path / "data.bin"
    data = os.urandom(300_000)
    path.write_bytes(data)
    log: list[str] = []

    def make() -> StreamResponse:
        return StreamResponse(
            status,
            [("content-length", str(length)), ("content-type", "application/octet-stream")],
            chunks_body([b"never sent"], log),
            file=FileRange(path, offset, length),
        )

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
        again = await client.get(f"http://127.0.0.1:{port}/")  # the connection is reusable
    assert reply.status_code == status
    assert reply.content == data[offset : offset + length]
    assert again.content == reply.content
    assert log == []  # the body was never iterated: the bytes went through sendfile


async def test_missing_file_before_start_becomes_500(tmp_path: Path) -> None:
    def make() -> StreamResponse:
        return StreamResponse(
            200,
            [("content-length", "10")],
            chunks_body([], []),
            file=FileRange(tmp_path / "gone.bin", 0, 10),
        )

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
    assert reply.status_code == 500
    assert reply.text == "Internal Server Error"


# -- SSE ------------------------------------------------------------------------------


async def test_sse_events_and_heartbeats() -> None:
    finalized = asyncio.Event()

    async def events() -> AsyncIterator[ServerSentEvent | str]:
        try:
            yield ServerSentEvent("hello", event="greeting", id="1")
            yield "plain"
            await asyncio.Event().wait()
        finally:
            finalized.set()

    def make() -> StreamResponse:
        return sse(events(), heartbeat=0.05)

    async with serve(respond_with(make)) as port:
        async with (
            httpx.AsyncClient() as client,
            client.stream("GET", f"http://127.0.0.1:{port}/") as reply,
        ):
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
        await asyncio.wait_for(finalized.wait(), 1.0)


# -- slow readers ---------------------------------------------------------------------


def numbered_events(total: int, produced: list[int]) -> AsyncIterator[str]:
    async def events() -> AsyncIterator[str]:
        for number in range(total):
            produced[0] = number + 1
            yield f"{number:06d}:" + "z" * 993  # 1000 bytes of data per event
            await asyncio.sleep(0)

    return events()


async def read_events(
    reader: asyncio.StreamReader, decoder: SSEDecoder, until: Callable[[int], bool]
) -> list[int]:
    numbers: list[int] = []
    while not until(len(numbers)):
        chunk = await reader.read(4096)
        if not chunk:
            break
        numbers += [int((event.data or "").split(":")[0]) for event in decoder.feed(chunk)]
    return numbers


async def stable(read: Callable[[], int], period: float = 0.1, within: float = 5.0) -> int:
    """Wait until `read()` stops changing for `period` seconds; return its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    value = read()
    while loop.time() < deadline:
        await asyncio.sleep(period)
        if read() == value:
            return value
        value = read()
    return value


async def test_slow_reader_slows_a_suspend_producer() -> None:
    capacity = 16
    total = 3000  # events of ~1 KB: 3 MB, far beyond every buffer on the way
    produced = [0]

    async def handler(request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        response = sse(
            numbered_events(total, produced),
            heartbeat=None,
            buffer=BufferPolicy(capacity, "suspend"),
        )
        return await to_aiohttp(request, response)

    async with serve(handler) as port:
        reader, writer, _ = await raw_request(
            port, b"GET / HTTP/1.0\r\n\r\n", rcvbuf=8192, limit=1024
        )
        decoder = SSEDecoder()
        numbers = await read_events(reader, decoder, until=lambda n: n >= 20)
        # The client stops reading. What the producer may be ahead by: the buffer, one
        # batch in hand, aiohttp's and asyncio's write buffers (64 KiB + 64 KiB) and the
        # kernel's socket buffers (a few KiB at these settings).
        ahead_limit = 2 * capacity + 160
        paused_at = await stable(lambda: produced[0])
        assert paused_at <= len(numbers) + ahead_limit, (paused_at, len(numbers))
        assert paused_at < total / 10
        numbers += await read_events(reader, decoder, until=lambda n: False)
        await close(writer)
    assert numbers == list(range(total))


async def test_slow_reader_makes_a_sliding_stream_drop_and_count() -> None:
    total = 3000
    produced = [0]
    metrics = InMemoryMetrics()
    previous = set_metrics(metrics)
    try:

        async def handler(request: web.Request) -> web.StreamResponse:
            sock = request.transport.get_extra_info("socket") if request.transport else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
            response = sse(
                numbered_events(total, produced),
                heartbeat=None,
                buffer=BufferPolicy(8, "sliding"),
                name="feed",
            )
            return await to_aiohttp(request, response)

        async with serve(handler) as port:
            reader, writer, _ = await raw_request(
                port, b"GET / HTTP/1.0\r\n\r\n", rcvbuf=8192, limit=1024
            )
            decoder = SSEDecoder()
            numbers = await read_events(reader, decoder, until=lambda n: n >= 20)
            # The client pauses; the producer runs to its end regardless.
            assert await eventually(lambda: produced[0] == total, within=5.0)
            numbers += await read_events(reader, decoder, until=lambda n: False)
            await close(writer)
    finally:
        set_metrics(previous)
    dropped = metrics.dropped["sse", "feed"]
    assert dropped > 0
    assert metrics.items["sse", "feed"] + dropped == total
    assert len(numbers) + dropped == total
    assert numbers == sorted(set(numbers))
    assert numbers[-1] == total - 1  # sliding keeps the newest


# -- downloads ------------------------------------------------------------------------


@pytest.fixture
def served_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(200_000)
    (tmp_path / "report.bin").write_bytes(data)
    return tmp_path, data


def download_handler(root: Path) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp(request, download(request.path.lstrip("/"), root=root))

    return handler


async def test_download_full_range_head_304_416(served_file: tuple[Path, bytes]) -> None:
    root, data = served_file
    async with serve(download_handler(root)) as port, httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{port}/report.bin"
        full = await client.get(url)
        assert full.status_code == 200
        assert full.content == data
        assert full.headers["content-length"] == str(len(data))
        assert full.headers["accept-ranges"] == "bytes"
        etag = full.headers["etag"]

        part = await client.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
        assert part.content == data[100:200]

        tail = await client.get(url, headers={"Range": "bytes=-1000"})
        assert tail.status_code == 206
        assert tail.content == data[-1000:]

        several = await client.get(url, headers={"Range": "bytes=0-9,5000-5009"})
        assert several.status_code == 206
        assert several.headers["content-type"].startswith("multipart/byteranges")
        assert data[:10] in several.content
        assert data[5000:5010] in several.content

        stale = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
        assert stale.status_code == 200
        assert stale.content == data

        head = await client.head(url)
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(data))
        assert head.content == b""

        unchanged = await client.get(url, headers={"If-None-Match": etag})
        assert unchanged.status_code == 304
        assert unchanged.content == b""

        beyond = await client.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{len(data)}"


async def test_download_refusals_become_their_status_with_the_middleware(
    served_file: tuple[Path, bytes],
) -> None:
    root, _ = served_file
    handler = download_handler(root)
    async with serve(handler, middlewares=[streamfx_errors]) as port, httpx.AsyncClient() as c:
        missing = await c.get(f"http://127.0.0.1:{port}/nothing-here.bin")
        outside = await c.get(f"http://127.0.0.1:{port}/..%2F..%2Fetc%2Fpasswd")
    assert missing.status_code == 404
    assert missing.text == "Not Found"
    assert outside.status_code == 403
    assert outside.text == "Forbidden"


# -- exports --------------------------------------------------------------------------


ROWS = [{"id": i, "name": f"row {i}", "note": "=cmd" if i == 3 else "ok"} for i in range(500)]


async def rows() -> AsyncIterator[dict[str, Any]]:
    for row in ROWS:
        yield row


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
async def test_each_export_format(fmt: Literal["json", "ndjson", "csv"]) -> None:
    def make() -> StreamResponse:
        return export(rows(), fmt, filename=f"rows.{fmt}")

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
    assert reply.status_code == 200
    assert reply.headers["transfer-encoding"] == "chunked"
    assert reply.headers["content-disposition"] == f'attachment; filename="rows.{fmt}"'
    if fmt == "json":
        assert json.loads(reply.content) == ROWS
    elif fmt == "ndjson":
        assert [json.loads(line) for line in reply.text.splitlines()] == ROWS
    else:
        table = list(csv.DictReader(io.StringIO(reply.text)))
        assert [r["id"] for r in table] == [str(r["id"]) for r in ROWS]
        assert table[3]["note"] == "'=cmd"  # the formula guard


async def test_export_failing_mid_stream_is_incomplete_for_the_client() -> None:
    async def failing() -> AsyncIterator[dict[str, int]]:
        for i in range(5000):
            yield {"i": i}
            await asyncio.sleep(0)
        raise RuntimeError("database went away")

    def make() -> StreamResponse:
        return export(failing(), "json")

    async with serve(respond_with(make)) as port, httpx.AsyncClient() as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await read_streamed(client, f"http://127.0.0.1:{port}/")


# -- uploads --------------------------------------------------------------------------


BOUNDARY = "streamfx-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(*parts: tuple[str, str | None, str | None, bytes], close: bool = True) -> bytes:
    """A multipart/form-data body: parts are (name, filename, content type, content)."""
    out = b""
    for name, filename, content_type, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type is not None:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + content + b"\r\n"
    if close:
        out += f"--{BOUNDARY}--\r\n".encode()
    return out


def upload_handler(store: Path) -> Handler:
    """Stores file parts in a per-request folder; removes it when the upload is refused."""

    async def handler(request: web.Request) -> web.StreamResponse:
        staging = store / f"upload-{id(request)}"
        staging.mkdir()
        fields: dict[str, str] = {}
        try:
            async with multipart_parts(
                request,
                max_size=10_000,
                max_part_size=4_000,
                max_parts=3,
                allowed_types=["text/plain"],
            ) as parts:
                async for part in parts:
                    if part.filename is None:
                        fields[part.name] = (await part.read()).decode()
                        continue
                    target = staging / part.name
                    async for chunk in part:
                        await asyncio.to_thread(append, target, chunk)
        except web.HTTPException:
            await asyncio.to_thread(shutil.rmtree, staging)
            raise
        stored = sorted(path.name for path in staging.iterdir())
        return web.json_response({"fields": fields, "files": stored})

    return handler


def listing(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def append(path: Path, chunk: bytes) -> None:
    with path.open("ab") as file:
        file.write(chunk)


async def test_upload_within_the_limits_is_stored(tmp_path: Path) -> None:
    body = multipart(("title", None, None, b"hello"), ("doc", "a.txt", "text/plain", b"a" * 3000))
    async with serve(upload_handler(tmp_path)) as port, httpx.AsyncClient() as client:
        reply = await client.post(
            f"http://127.0.0.1:{port}/", content=body, headers={"Content-Type": MULTIPART}
        )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"fields": {"title": "hello"}, "files": ["doc"]}
    [folder] = listing(tmp_path)
    assert (folder / "doc").read_bytes() == b"a" * 3000


def in_pieces(body: bytes, size: int = 1000) -> Callable[[], AsyncIterator[bytes]]:
    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), size):
            yield body[start : start + size]

    return pieces


UPLOAD_REFUSALS = {
    "declared length over max_size": (
        413,
        multipart(("doc", "a.txt", "text/plain", b"a" * 20_000)),
        False,
        MULTIPART,
    ),
    "streamed body over max_size": (
        413,
        multipart(*[(f"f{i}", f"{i}.txt", "text/plain", b"b" * 3500) for i in range(3)]),
        True,
        MULTIPART,
    ),
    "part over max_part_size": (
        413,
        multipart(
            ("ok", "ok.txt", "text/plain", b"c" * 100), ("big", "b.txt", "text/plain", b"d" * 5000)
        ),
        True,
        MULTIPART,
    ),
    "more parts than max_parts": (
        413,
        multipart(*[(f"f{i}", f"{i}.txt", "text/plain", b"e" * 10) for i in range(4)]),
        True,
        MULTIPART,
    ),
    "file type not allowed": (
        415,
        multipart(("ok", "ok.txt", "text/plain", b"f"), ("img", "x.png", "image/png", b"g")),
        False,
        MULTIPART,
    ),
    "not multipart at all": (415, b'{"a": 1}', False, "application/json"),
    "truncated body": (
        400,
        multipart(("doc", "a.txt", "text/plain", b"h" * 100), close=False),
        False,
        MULTIPART,
    ),
}


@pytest.mark.parametrize("case", list(UPLOAD_REFUSALS))
async def test_refused_uploads_get_their_status_and_leave_nothing(
    tmp_path: Path, case: str
) -> None:
    status, body, streamed, content_type = UPLOAD_REFUSALS[case]
    content: bytes | AsyncIterator[bytes] = in_pieces(body)() if streamed else body
    async with serve(upload_handler(tmp_path)) as port, httpx.AsyncClient() as client:
        reply = await client.post(
            f"http://127.0.0.1:{port}/", content=content, headers={"Content-Type": content_type}
        )
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    assert 0 < len(reply.text) < 200
    assert listing(tmp_path) == []  # nothing of the refused upload is kept


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

    body = multipart(("doc", "a.txt", "text/plain", b"z" * 500))
    async with serve(handler, middlewares=[streamfx_errors]) as port, httpx.AsyncClient() as c:
        reply = await c.post(
            f"http://127.0.0.1:{port}/", content=body, headers={"Content-Type": MULTIPART}
        )
    assert reply.status_code == 413
    assert reply.headers["content-type"].startswith("text/plain")
    assert "100" in reply.text
