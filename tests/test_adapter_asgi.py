"""What only `streamfx.adapters.asgi` does: inside Starlette, FastAPI, Starlette's
middleware and Litestar, and the ASGI contract called directly (without a server).
What every adapter does, the ASGI one included under uvicorn, hypercorn and granian:
tests/test_adapter_contract*.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from litestar import Litestar, asgi
from litestar.types import Receive as LitestarReceive
from litestar.types import Scope as LitestarScope
from litestar.types import Send as LitestarSend
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamfx import DownloadError, StreamfxError, StreamResponse, download
from streamfx.adapters.asgi import (
    StreamingASGIResponse,
    error_response,
    send_response,
    to_asgi,
)
from tests._client import close_all, open_raw, recv_until, wait_until
from tests._servers import SERVERS, Server, serve
from tests._stream_routes import CountedBody, lines, make_routes, numbered, once
from tests.apps.asgi_app import fastapi_app, running_tasks, starlette_app
from tests.apps.tally import Tally


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Server:
    """Each test runs under each in-process server."""
    name: Server = request.param
    return name


@contextlib.asynccontextmanager
async def running(app: Any, server: Server) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """`app` under `server`, and an httpx client for it; yields ``(client, port)``."""
    async with (
        serve(app, server) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}") as client,
    ):
        yield client, port


async def twenty_clients_leave(port: int, tally: Tally) -> None:
    """Twenty clients read the start of ``/forever`` and leave; every body ends."""
    socks = await asyncio.gather(*(open_raw(port, "/forever") for _ in range(20)))
    try:
        await asyncio.gather(*(recv_until(sock, b"\n3\n") for sock in socks))
    finally:
        close_all(socks)
    await wait_until(lambda: tally.closes >= 20, "every body's close")
    await wait_until(lambda: running_tasks() == 0, "no streamfx task left")


# -- inside frameworks ------------------------------------------------------------------


async def test_headers_added_in_starlette_are_sent(server: Server, tmp_path: Path) -> None:
    """With Starlette installed, `to_asgi` returns a Starlette Response."""
    async with running(starlette_app(Tally(), tmp_path), server) as (client, _port):
        reply = await client.get("/lines", params={"n": 3})
    assert reply.headers["x-via"] == "starlette"
    assert reply.content == lines(range(3))


async def test_fastapi_background_tasks_run_after_the_body(server: Server, tmp_path: Path) -> None:
    tally = Tally()
    app = fastapi_app(tally, tmp_path)

    @app.get("/with-background")
    async def with_background(background: BackgroundTasks) -> Response:
        def after() -> None:
            tally.background += 1

        background.add_task(after)
        body = CountedBody(numbered(tally, 5), tally)
        return to_asgi(StreamResponse(200, [], body))  # a Response: no cast, no ignore

    async with running(app, server) as (client, _port):
        reply = await client.get("/with-background")
        assert reply.content == lines(range(5))
        await wait_until(lambda: tally.background == 1, "the background task")
    assert tally.closes == 1


async def test_behind_base_http_middleware(server: Server, tmp_path: Path) -> None:
    """BaseHTTPMiddleware runs the endpoint in its own task and wraps receive/send."""
    tally = Tally()
    app = starlette_app(tally, tmp_path)

    async def passthrough(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-seen"] = "yes"
        return response

    app.add_middleware(BaseHTTPMiddleware, dispatch=passthrough)
    async with running(app, server) as (client, port):
        reply = await client.get("/lines", params={"n": 500})
        assert reply.headers["x-seen"] == "yes"
        assert reply.content == lines(range(500))
        failed = await client.get("/fail-before")
        assert failed.status_code == 500
        await twenty_clients_leave(port, tally)
    assert tally.finalized == tally.started == 22
    assert tally.closes == 22


def litestar_app(tally: Tally, root: Path) -> Litestar:
    """`to_asgi` mounted in Litestar through ``@asgi`` route handlers."""
    routes = make_routes(tally, root)

    @asgi("/lines", copy_scope=True)
    async def lines_handler(
        scope: LitestarScope, receive: LitestarReceive, send: LitestarSend
    ) -> None:
        query = {key: values[0] for key, values in parse_qs(scope["query_string"].decode()).items()}
        app = to_asgi(routes["/lines"](query, ""))
        await app(scope, receive, send)  # type: ignore[arg-type]

    @asgi("/forever", copy_scope=True)
    async def forever_handler(
        scope: LitestarScope, receive: LitestarReceive, send: LitestarSend
    ) -> None:
        app = to_asgi(routes["/forever"]({}, ""))
        await app(scope, receive, send)  # type: ignore[arg-type]

    return Litestar(route_handlers=[lines_handler, forever_handler])


async def test_mounted_in_litestar(server: Server, tmp_path: Path) -> None:
    tally = Tally()
    async with running(litestar_app(tally, tmp_path), server) as (client, port):
        reply = await client.get("/lines", params={"n": 300})
        assert reply.content == lines(range(300))
        head = await client.head("/lines")
        assert head.status_code == 200
        assert head.content == b""
        await twenty_clients_leave(port, tally)
    assert tally.finalized == tally.started == 21
    assert tally.closes == 22


async def test_backlog_goes_out_in_batches(server: Server, tmp_path: Path) -> None:
    """A producer far ahead of the client: many items per body message (per write)."""
    inner = starlette_app(Tally(), tmp_path)
    bodies = 0

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        async def counted(message: Any) -> None:
            nonlocal bodies
            if message["type"] == "http.response.body" and message.get("body"):
                bodies += 1
            await send(message)

        await inner(scope, receive, counted)

    async with running(counting, server) as (client, _port):
        reply = await client.get("/lines", params={"n": 20_000})
    assert reply.content == lines(range(20_000))
    assert bodies <= 20_000 // 8


# -- the ASGI contract without a server ---------------------------------------------------
# Servers here never make `send` raise; ASGI 2.4 allows it, so the adapter's answer to it
# is checked by calling the application directly.


def http_scope(method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/", "headers": [(b"host", b"test")]}


async def never_disconnects() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}  # pragma: no cover - never reached


async def test_send_raising_oserror_is_a_disconnect() -> None:
    tally = Tally()
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        if len(sent) == 3:
            raise ConnectionResetError("peer went away")
        sent.append(message)

    body = CountedBody(numbered(tally, None, delay=0.001), tally)
    completed = await send_response(
        StreamResponse(200, [], body), http_scope(), never_disconnects, send
    )
    assert completed is False
    assert [message["type"] for message in sent] == ["http.response.start"] + [
        "http.response.body"
    ] * 2
    assert tally.finalized == tally.started == tally.closes == 1
    assert running_tasks() == 0


async def test_cancelled_by_the_server_closes_the_body() -> None:
    tally = Tally()
    sending = asyncio.Event()

    async def send(message: Any) -> None:
        sending.set()

    body = CountedBody(numbered(tally, None, delay=0.001), tally)
    app = to_asgi(StreamResponse(200, [], body))

    async def run() -> None:
        await app(http_scope(), never_disconnects, send)

    task = asyncio.create_task(run())
    await sending.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tally.finalized == tally.started == tally.closes == 1
    assert running_tasks() == 0


async def test_a_sent_chunk_is_not_held_while_the_body_waits() -> None:
    """Idle memory: the last chunk sent stayed referenced by the sending loop until
    the body produced the next one (per connection: a large catch-up batch, say)."""
    chunks: list[bytes] = []
    second_asked = asyncio.Event()
    parked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def body() -> AsyncIterator[bytes]:
        yield b"first\n"
        yield b"x" * 10_000
        second_asked.set()
        await parked  # an idle stream
        yield b"never"  # pragma: no cover - never reached

    async def send(message: Any) -> None:
        if message.get("body"):
            chunks.append(message["body"])

    task = asyncio.create_task(
        send_response(StreamResponse(200, [], body()), http_scope(), never_disconnects, send)
    )
    async with asyncio.timeout(5):
        await second_asked.wait()
    big = chunks[-1]
    assert len(big) == 10_000
    assert sys.getrefcount(big) == 3, "held by `chunks`, `big` and the call's argument only"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def first_then_park(
    waiting: asyncio.Event, parked: asyncio.Future[None]
) -> AsyncIterator[bytes]:
    """One chunk, then an idle stream: `waiting` is set and `parked` awaited."""
    yield b"first\n"
    waiting.set()
    await parked
    yield b"never"  # pragma: no cover - never reached


async def test_the_app_awaits_the_body_from_its_own_frame() -> None:
    """Per chunk, nothing stands between the application's coroutine and the body: a
    waiting body (an idle stream, between events) is suspended and resumed through the
    chain of frames above it, so every coroutine in between costs each event."""
    waiting = asyncio.Event()
    parked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(message: Any) -> None:
        pass

    app = to_asgi(StreamResponse(200, [], first_then_park(waiting, parked)))
    call = app(http_scope(), never_disconnects, send)
    task = asyncio.ensure_future(call)
    try:
        async with asyncio.timeout(5):
            await waiting.wait()
        awaited = call.cr_await  # type: ignore[attr-defined]
        assert type(awaited).__name__ == "async_generator_asend"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_an_idle_response_holds_no_headers_list_and_no_cell() -> None:
    """Issue 15, idle memory: each response held a list of its encoded headers for the
    whole stream (sent in the start message, then kept as ``raw_headers``), and each
    call a cell (a comprehension in the sending frame captured a local). The headers
    are now one tuple shared by every response with the same ones, a list made only
    for the start message (or when ``raw_headers`` is asked for)."""
    started: list[Any] = []
    waiting = asyncio.Event()
    parked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            started.append(message["headers"])

    headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
    apps = [
        to_asgi(StreamResponse(200, list(headers), first_then_park(waiting, parked)))
        for _ in range(2)
    ]
    tasks = [asyncio.create_task(app(http_scope(), never_disconnects, send)) for app in apps]
    try:
        async with asyncio.timeout(5):
            await waiting.wait()
            await wait_until(lambda: len(started) == 2, "both starts")
        expected = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        assert started == [expected, expected]
        assert started[0] is not started[1], "a list of its own for each start message"
        for app in apps:
            assert not [value for value in vars(app).values() if isinstance(value, list)]
        assert StreamingASGIResponse.__call__.__code__.co_cellvars == ()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_headers_added_before_the_start_are_sent_once(tmp_path: Path) -> None:
    """Headers added through ``raw_headers`` (Starlette's ``headers``, ``set_cookie``)
    are sent after the response's own, also when ``for_request`` gave another response
    (a Range request), and a header the response already has is not sent twice."""
    path = tmp_path / "data.txt"
    path.write_bytes(b"0123456789")
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    app = to_asgi(download(path))
    own = list(app.raw_headers)
    app.raw_headers.append((b"x-added", b"yes"))
    app.raw_headers.append(own[0])  # already there: not sent twice
    scope = {**http_scope(), "headers": [(b"range", b"bytes=2-4")]}
    await app(scope, never_disconnects, send)
    start = sent[0]
    assert start["status"] == 206
    names = [name for name, _ in start["headers"]]
    assert names.count(own[0][0]) == 1
    assert start["headers"][-1] == (b"x-added", b"yes")
    assert b"".join(message.get("body", b"") for message in sent[1:]) == b"234"


def test_works_without_starlette() -> None:
    """Starlette is optional: without it `StreamingASGIResponse` is a plain ASGI app
    (with it, a Starlette ``Response``: tests/test_fastapi.py)."""
    script = """
import asyncio, sys
sys.modules["starlette"] = None  # as if it were not installed
import streamfx.adapters.asgi as adapter
from streamfx import StreamResponse
assert adapter.StreamingASGIResponse.__mro__ == (adapter.StreamingASGIResponse, object)
async def body():
    yield b"x"
app = adapter.to_asgi(StreamResponse(200, [("content-type", "text/plain")], body()))
assert type(app) is adapter.StreamingASGIResponse, type(app)
sent = []
async def receive():
    await asyncio.Event().wait()
async def send(message):
    sent.append(message)
scope = {"type": "http", "method": "GET", "headers": []}
asyncio.run(app(scope, receive, send))
assert [m.get("status", m.get("body")) for m in sent] == [200, b"x", b""], sent
assert "starlette.responses" not in sys.modules
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


async def test_error_from_for_request_is_answered() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    def respond_to(method: str, headers: Any) -> StreamResponse:
        raise DownloadError("gone meanwhile", status_code=404)

    response = StreamResponse(200, [], once(b"never"), respond_to=respond_to)
    assert await send_response(response, http_scope(), receive, send) is False
    assert sent[0]["status"] == 404
    assert sent[1]["body"] == b"Not Found"


# -- a client evicted by the write timeout ------------------------------------------------


def open_sockets() -> int:
    """How many sockets this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


STALLED = 20


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts sockets in /proc")
@pytest.mark.parametrize("http", ["h11", "httptools"])
@pytest.mark.parametrize("shape", ["raw", "fastapi"])
async def test_uvicorn_drops_the_connection_of_an_evicted_client_without_an_error(
    http: str, shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Without the abort, uvicorn's close waits for the client to read: the server kept
    # one socket per stalled client, and logged "ASGI callable returned without
    # completing response" at ERROR for each.
    finalized = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal finalized
        try:
            while True:
                yield b"x" * 65536
        finally:
            finalized += 1

    def response() -> Any:
        body = StreamResponse(200, [("content-type", "application/octet-stream")], endless())
        return to_asgi(body, write_timeout=0.3)

    async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await response()(scope, receive, send)

    fastapi = FastAPI()
    fastapi.get("/")(response)
    caplog.set_level(logging.INFO)
    async with serve(raw if shape == "raw" else fastapi, "uvicorn", http=http) as (_host, port):
        before = open_sockets()
        clients = [await open_raw(port, "/", rcvbuf=4096) for _ in range(STALLED)]
        try:
            await wait_until(lambda: finalized == STALLED, "every stalled body closed")
            await wait_until(
                lambda: open_sockets() <= before + STALLED,
                "the server's side of every evicted connection closed",
                seconds=5,
            )
        finally:
            close_all(clients)
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
    evictions = [record for record in caplog.records if "write_timeout" in record.getMessage()]
    assert len(evictions) == STALLED
    assert {record.levelno for record in evictions} == {logging.INFO}


def test_write_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="write_timeout"):
        to_asgi(StreamResponse(200, [], once(b"")), write_timeout=0)


async def test_error_response_as_the_exception_handler_of_starlette_and_fastapi(
    server: Server, tmp_path: Path
) -> None:
    """The README's idiom: no try/except in the endpoints; the framework's exception
    handler for `StreamfxError` answers what ``download()`` raises before `to_asgi` runs
    (and an application's own error), with the status, headers and detail."""
    (tmp_path / "here.txt").write_text("here")

    async def files(request: Request) -> Response:
        if request.path_params["name"] == "quota":
            raise StreamfxError("user 7", status_code=429, headers={"Retry-After": "9"})
        return cast(Response, to_asgi(download(request.path_params["name"], root=tmp_path)))

    def handler(request: Request, exc: Exception) -> Response:
        return cast(Response, error_response(exc))

    starlette = Starlette(
        routes=[Route("/files/{name}", files)], exception_handlers={StreamfxError: handler}
    )
    fastapi = FastAPI()
    fastapi.add_api_route("/files/{name}", files)
    fastapi.add_exception_handler(StreamfxError, handler)
    for app in (starlette, fastapi):
        async with running(app, server) as (client, _):
            found = await client.get("/files/here.txt")
            missing = await client.get("/files/missing.txt")
            quota = await client.get("/files/quota")
        assert (found.status_code, found.text) == (200, "here")
        assert (missing.status_code, missing.text) == (404, "Not Found")
        assert (quota.status_code, quota.text) == (429, "Too Many Requests")
        assert quota.headers["retry-after"] == "9"
