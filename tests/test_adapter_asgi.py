"""`streamfx.adapters.asgi` under real servers (uvicorn, hypercorn) with real clients."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
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

from streamfx import (
    BufferPolicy,
    DownloadError,
    MalformedUpload,
    ServerSentEvent,
    SSEDecoder,
    StreamResponse,
    UnsupportedMediaType,
    UploadError,
    UploadTooLarge,
    download,
    export,
    request_shutdown,
    reset_shutdown,
    sse,
)
from streamfx._response.engine import encode_batches
from streamfx.adapters.asgi import error_response, parts, send_response, to_asgi
from streamfx.metrics import InMemoryMetrics, set_metrics
from tests._servers import SERVERS, Server, free_port, serve, serve_command


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Server:
    """Each test runs under each in-process server."""
    name: Server = request.param
    return name


@dataclass
class Tally:
    """What the app's bodies did, shared with the test (same process, same loop)."""

    started: int = 0
    finalized: int = 0
    produced: int = 0
    background: int = 0
    metrics: InMemoryMetrics = field(default_factory=InMemoryMetrics)
    root: Path = Path()
    uploads: list[list[dict[str, Any]]] = field(default_factory=list)
    refused: list[UploadError] = field(default_factory=list)


class Refused(Exception):
    status = 403


def lines(items: list[int]) -> bytes:
    return b"".join(b"%d\n" % item for item in items)


def body_of(
    tally: Tally,
    count: int | None,
    *,
    delay: float = 0.0,
    size: int = 0,
    policy: BufferPolicy | None = None,
    fail_at: int | None = None,
    error: Exception | None = None,
    keepalive: float | None = None,
) -> AsyncIterator[bytes]:
    """A batching body of `count` numbered lines (forever when None)."""

    async def source() -> AsyncIterator[int]:
        tally.started += 1
        try:
            index = 0
            while count is None or index < count:
                if index == fail_at:
                    raise error or RuntimeError("source failed")
                if delay:
                    await asyncio.sleep(delay)
                tally.produced += 1
                yield index
                index += 1
        finally:
            tally.finalized += 1

    pad = b"x" * size

    def encode(batch: list[int]) -> bytes:
        return b"".join(b"%s%d\n" % (pad, item) for item in batch)

    return encode_batches(
        source(),
        policy or BufferPolicy(16, "suspend"),
        encode,
        kind="test",
        keepalive=keepalive,
        beat=b":\n",
        metrics=tally.metrics,
    )


def text_response(body: AsyncIterator[bytes]) -> StreamResponse:
    return StreamResponse(200, [("content-type", "text/plain")], body)


def routes(tally: Tally) -> dict[str, Callable[[Request], StreamResponse]]:
    def number(request: Request, name: str, default: int | None) -> int | None:
        value = request.query_params.get(name)
        return default if value is None else int(value)

    def lines_route(request: Request) -> StreamResponse:
        delay = float(request.query_params.get("delay", "0"))
        keepalive = request.query_params.get("keepalive")
        return text_response(
            body_of(
                tally,
                number(request, "n", 10),
                delay=delay,
                keepalive=float(keepalive) if keepalive else None,
            )
        )

    def forever(request: Request) -> StreamResponse:
        return text_response(body_of(tally, None, delay=0.001))

    def fail_before(request: Request) -> StreamResponse:
        return text_response(body_of(tally, 5, fail_at=0))

    def refused(request: Request) -> StreamResponse:
        return text_response(body_of(tally, 5, fail_at=0, error=Refused("no")))

    def fail_after(request: Request) -> StreamResponse:
        return text_response(body_of(tally, 50, fail_at=20, delay=0.001))

    def slow(request: Request) -> StreamResponse:
        strategy = request.query_params["strategy"]
        capacity = number(request, "capacity", 16)
        assert capacity is not None
        return text_response(
            body_of(
                tally,
                number(request, "n", 1000),
                size=number(request, "size", 1000) or 0,
                policy=BufferPolicy(capacity, strategy),  # type: ignore[arg-type]
            )
        )

    def stall(request: Request) -> StreamResponse:
        return text_response(body_of(tally, 1, delay=60))

    def empty(request: Request) -> StreamResponse:
        return text_response(body_of(tally, 0))

    return {
        "/lines": lines_route,
        "/forever": forever,
        "/fail-before": fail_before,
        "/refused": refused,
        "/fail-after": fail_after,
        "/slow": slow,
        "/empty": empty,
        "/stall": stall,
    }


Handler = Callable[[Request], Awaitable[Any]]


def feature_routes(tally: Tally) -> dict[str, Handler]:
    """Routes built on the response builders (sse, download) and the upload helper."""

    async def events(request: Request) -> Any:
        count = int(request.query_params.get("n", "3"))
        gap = float(request.query_params.get("gap", "0"))

        async def source() -> AsyncIterator[ServerSentEvent]:
            tally.started += 1
            try:
                for index in range(count):
                    if index:
                        await asyncio.sleep(gap)
                    yield ServerSentEvent(data=f"event {index}", id=str(index))
            finally:
                tally.finalized += 1

        heartbeat = float(request.query_params.get("heartbeat", "15"))
        farewell = ServerSentEvent("bye", event="shutdown")
        return to_asgi(sse(source(), heartbeat=heartbeat, farewell=farewell))

    async def files(request: Request) -> Any:
        try:
            response = download(request.path_params["name"], root=tally.root)
        except DownloadError as exc:
            return error_response(exc)
        return to_asgi(response)

    async def upload(request: Request) -> Any:
        query = request.query_params
        allowed = query.get("allowed")
        received: list[dict[str, Any]] = []
        try:
            async with parts(
                request,
                max_size=int(query.get("max_size", "1000000")),
                max_part_size=int(query.get("max_part_size", "1000000")),
                max_parts=int(query.get("max_parts", "10")),
                allowed_types=allowed.split(",") if allowed else None,
            ) as stream:
                async for part in stream:
                    size = 0
                    async for chunk in part:
                        size += len(chunk)
                    received.append({"name": part.name, "filename": part.filename, "size": size})
        except UploadError as exc:
            tally.refused.append(exc)
            return error_response(exc)
        tally.uploads.append(received)
        text = json.dumps(received).encode()
        return to_asgi(StreamResponse(200, [("content-type", "application/json")], once(text)))

    async def exported(request: Request) -> Any:
        count = int(request.query_params.get("n", "100"))
        fail_at = int(request.query_params.get("fail_at", "-1"))

        async def rows() -> AsyncIterator[dict[str, Any]]:
            tally.started += 1
            try:
                for index in range(count):
                    if index == fail_at:
                        raise RuntimeError("the database went away")
                    yield {"id": index, "name": f"row {index}", "formula": "=1+1"}
            finally:
                tally.finalized += 1

        return to_asgi(export(rows(), request.path_params["format"], filename="rows.out"))

    return {
        "/sse": events,
        "/files/{name}": files,
        "/upload": upload,
        "/export/{format}": exported,
    }


async def once(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk


def all_routes(tally: Tally) -> dict[str, Handler]:
    def lift(make: Callable[[Request], StreamResponse]) -> Handler:
        async def handler(request: Request) -> Any:
            return to_asgi(make(request))

        return handler

    handlers = {path: lift(make) for path, make in routes(tally).items()}
    handlers.update(feature_routes(tally))
    return handlers


def starlette_app(tally: Tally) -> Starlette:
    def checked(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            app = await handler(request)
            assert isinstance(app, Response)  # Starlette sends it as its own
            app.headers["x-via"] = "starlette"  # headers added here are sent too
            return app

        return endpoint

    return Starlette(
        routes=[
            Route(path, checked(handler), methods=["GET", "HEAD", "POST"])
            for path, handler in all_routes(tally).items()
        ]
    )


def fastapi_app(tally: Tally) -> FastAPI:
    app = FastAPI()
    for path, handler in all_routes(tally).items():
        app.add_api_route(path, handler, methods=["GET", "HEAD", "POST"])

    @app.get("/with-background")
    async def with_background(background: BackgroundTasks) -> Response:
        def after() -> None:
            tally.background += 1

        background.add_task(after)
        return to_asgi(text_response(body_of(tally, 5)))  # type: ignore[return-value]

    return app


APPS = {"starlette": starlette_app, "fastapi": fastapi_app}


@pytest.fixture(params=list(APPS))
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def settle(condition: Callable[[], bool], seconds: float = 1.0) -> None:
    """Wait (polling) up to `seconds` for `condition`; fail if it never holds."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - polling counters the app updates
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(app: Any, server: Server) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """`app` under `server`, and an httpx client for it; yields ``(client, port)``."""
    async with (
        serve(app, server) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}") as client,
    ):
        yield client, port


def app_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("streamfx") and not task.done()
    ]


# -- plain streaming ------------------------------------------------------------------


async def test_streams_whole_body_and_closes(server: Server, framework: str) -> None:
    tally = Tally()
    async with running(APPS[framework](tally), server) as (client, _port):
        reply = await client.get("/lines", params={"n": 1000})
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/plain"
        assert reply.content == lines(list(range(1000)))
        empty = await client.get("/empty")
        assert empty.status_code == 200
        assert empty.content == b""
    if framework == "starlette":
        assert reply.headers["x-via"] == "starlette"
    assert tally.finalized == tally.started == 2
    assert tally.metrics.outcomes[("test", "", "completed")] == 2


async def test_fastapi_background_tasks_run_after_the_body(server: Server) -> None:
    tally = Tally()
    async with running(fastapi_app(tally), server) as (client, _port):
        reply = await client.get("/with-background")
        assert reply.content == lines(list(range(5)))
        await settle(lambda: tally.background == 1)


async def test_head_sends_headers_only(server: Server, framework: str) -> None:
    tally = Tally()
    async with running(APPS[framework](tally), server) as (client, _port):
        reply = await client.head("/lines")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/plain"
    assert reply.content == b""
    assert tally.started == 0


async def test_error_before_start_is_500(server: Server, framework: str) -> None:
    tally = Tally()
    async with running(APPS[framework](tally), server) as (client, _port):
        failed = await client.get("/fail-before")
        refused = await client.get("/refused")
        after = await client.get("/lines", params={"n": 3})
    assert failed.status_code == 500
    assert failed.headers["content-type"].startswith("text/plain")
    assert failed.text == "Internal Server Error"
    assert refused.status_code == 403
    assert refused.text == "Forbidden"
    assert after.content == lines([0, 1, 2])
    assert tally.finalized == tally.started == 3


async def test_error_after_start_aborts_connection(server: Server, framework: str) -> None:
    tally = Tally()
    async with running(APPS[framework](tally), server) as (client, port):
        received = bytearray()
        async with client.stream("GET", "/fail-after") as reply:
            assert reply.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                await read_into(received, reply)
        assert received == lines(list(range(20)))
        raw = await raw_get(port, "/fail-after")
        assert raw.endswith(b"19\n\r\n"), raw[-40:]
        assert not raw.endswith(b"0\r\n\r\n")
    await settle(lambda: tally.finalized == tally.started == 2)


async def read_into(received: bytearray, reply: httpx.Response) -> None:
    async for chunk in reply.aiter_raw():
        received += chunk


async def raw_get(port: int, path: str, seconds: float = 5.0) -> bytes:
    """Everything a raw HTTP/1.1 GET receives until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        async with asyncio.timeout(seconds):
            return await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()


# -- disconnects ----------------------------------------------------------------------


async def open_raw(port: int, path: str, rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking socket that sent ``GET path``; `rcvbuf` is set before connecting."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return sock


async def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(5):
        while marker not in data:
            chunk = await loop.sock_recv(sock, 65536)
            assert chunk, f"connection closed before {marker!r}: {data!r}"
            data += chunk
    return data


async def test_200_clients_disconnecting_mid_stream(server: Server, framework: str) -> None:
    tally = Tally()
    async with running(APPS[framework](tally), server) as (_client, port):
        socks = await asyncio.gather(*(open_raw(port, "/forever") for _ in range(200)))
        try:
            await asyncio.gather(*(recv_until(sock, b"\n3\n") for sock in socks))
            assert tally.started == 200
            assert tally.finalized == 0
        finally:
            for sock in socks:
                sock.close()
        await settle(lambda: tally.finalized == 200)
        await settle(lambda: not app_tasks())
    assert tally.metrics.outcomes[("test", "", "closed")] == 200
    assert tally.metrics.active[("test", "")] == 0


async def test_disconnect_before_first_chunk(server: Server, framework: str) -> None:
    tally = Tally()
    async with running(APPS[framework](tally), server) as (_client, port):
        sock = await open_raw(port, "/stall")
        await settle(lambda: tally.started == 1)
        sock.close()
        await settle(lambda: tally.finalized == 1)
        await settle(lambda: not app_tasks())


# -- slow readers ---------------------------------------------------------------------

ITEM = 1000  # bytes per line in the slow-reader tests
ITEMS = 20_000  # 20 MB: far more than the socket buffers and the 16-item body buffer


async def read_all_slowly(sock: socket.socket) -> bytes:
    """Read in small pieces until the chunked body's terminating chunk arrives."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    async with asyncio.timeout(30):
        while not data.endswith(b"\r\n0\r\n\r\n"):
            chunk = await loop.sock_recv(sock, 16384)
            assert chunk, "connection closed before the end of the body"
            data += chunk
    return bytes(data)


def body_lines(raw: bytes) -> list[bytes]:
    """The lines of a chunked HTTP/1.1 response body (headers and framing removed)."""
    _, _, chunked = raw.partition(b"\r\n\r\n")
    body = bytearray()
    while True:
        size_line, _, rest = chunked.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body += rest[:size]
        chunked = rest[size + 2 :]
    return bytes(body).splitlines()


async def test_slow_reader_blocks_a_suspend_producer(server: Server) -> None:
    tally = Tally()
    async with running(starlette_app(tally), server) as (_client, port):
        path = f"/slow?strategy=suspend&capacity=16&size={ITEM}&n={ITEMS}"
        sock = await open_raw(port, path, rcvbuf=4096)
        try:
            await settle(lambda: tally.produced > 0)
            stalled = -1
            while stalled != tally.produced:  # until the producer stops making progress
                stalled = tally.produced
                await asyncio.sleep(0.2)
            # Blocked by the client: what is out is at most the socket buffers' worth.
            assert stalled * ITEM < ITEMS * ITEM // 3, stalled
            received = body_lines(await read_all_slowly(sock))
        finally:
            sock.close()
    assert received == [b"x" * ITEM + b"%d" % index for index in range(ITEMS)]
    assert tally.metrics.dropped[("test", "")] == 0


async def test_slow_reader_drops_with_sliding(server: Server) -> None:
    tally = Tally()
    async with running(starlette_app(tally), server) as (_client, port):
        path = f"/slow?strategy=sliding&capacity=16&size={ITEM}&n={ITEMS}"
        sock = await open_raw(port, path, rcvbuf=4096)
        try:
            await settle(lambda: tally.produced == ITEMS, seconds=10)
            received = body_lines(await read_all_slowly(sock))
        finally:
            sock.close()
    dropped = tally.metrics.dropped[("test", "")]
    assert dropped > 0
    numbers = [int(line[ITEM:]) for line in received]
    assert numbers == sorted(set(numbers))  # a subsequence, in order
    assert len(numbers) + dropped == ITEMS
    assert numbers[-1] == ITEMS - 1  # sliding keeps the newest


# -- SSE --------------------------------------------------------------------------------


async def test_sse_with_heartbeats(server: Server, framework: str) -> None:
    tally = Tally()
    async with (
        running(APPS[framework](tally), server) as (client, _port),
        client.stream("GET", "/sse", params={"n": 3, "gap": 0.3, "heartbeat": 0.05}) as reply,
    ):
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
        raw = b"".join([chunk async for chunk in reply.aiter_raw()])
    events = SSEDecoder().feed(raw)
    assert [(event.data, event.id) for event in events] == [
        ("event 0", "0"),
        ("event 1", "1"),
        ("event 2", "2"),
    ]
    # 0.6 s of silence in all, a ping every 0.05 s of it.
    assert raw.count(b": ping\n\n") >= 4
    assert tally.finalized == tally.started == 1


async def test_sse_client_leaving_closes_the_source(server: Server) -> None:
    tally = Tally()
    async with running(starlette_app(tally), server) as (_client, port):
        sock = await open_raw(port, "/sse?n=1000&gap=0.5&heartbeat=0.05")
        try:
            await recv_until(sock, b"data: event 0\n")
        finally:
            sock.close()
        await settle(lambda: tally.finalized == 1)
        await settle(lambda: not app_tasks())


# -- downloads ----------------------------------------------------------------------------

SIZE = 300_000


@pytest.fixture
def files(tmp_path: Path) -> Tally:
    (tmp_path / "data.bin").write_bytes(bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256))
    return Tally(root=tmp_path)


async def test_download_range_conditional_head(
    server: Server, framework: str, files: Tally
) -> None:
    content = (files.root / "data.bin").read_bytes()
    async with running(APPS[framework](files), server) as (client, _port):
        whole = await client.get("/files/data.bin")
        assert whole.status_code == 200
        assert whole.content == content
        assert whole.headers["content-length"] == str(SIZE)
        assert whole.headers["accept-ranges"] == "bytes"
        etag = whole.headers["etag"]

        part = await client.get("/files/data.bin", headers={"range": "bytes=1000-1999"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 1000-1999/{SIZE}"
        assert part.content == content[1000:2000]

        tail = await client.get("/files/data.bin", headers={"range": "bytes=-10"})
        assert tail.status_code == 206
        assert tail.content == content[-10:]

        several = await client.get("/files/data.bin", headers={"range": "bytes=0-9,500-509"})
        assert several.status_code == 206
        assert several.headers["content-type"].startswith("multipart/byteranges; boundary=")
        assert content[0:10] in several.content
        assert content[500:510] in several.content

        unchanged = await client.get("/files/data.bin", headers={"if-none-match": etag})
        assert unchanged.status_code == 304
        assert unchanged.content == b""

        beyond = await client.get("/files/data.bin", headers={"range": f"bytes={SIZE}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{SIZE}"

        head = await client.head("/files/data.bin", headers={"range": "bytes=0-9"})
        assert head.status_code == 200
        assert head.headers["content-length"] == str(SIZE)
        assert head.content == b""

        missing = await client.get("/files/nothing.bin")
        assert missing.status_code == 404
        assert missing.text == "Not Found"
        outside = await client.get("/files/..%2Fescape.bin")
        assert outside.status_code in (403, 404)


async def test_download_client_leaving_closes_the_file(
    server: Server, files: Tally, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"y" * 50_000_000)
    metrics = InMemoryMetrics()
    previous = set_metrics(metrics)
    try:
        async with running(starlette_app(files), server) as (_client, port):
            sock = await open_raw(port, "/files/big.bin", rcvbuf=4096)
            try:
                await recv_until(sock, b"yyyy")
            finally:
                sock.close()
            await settle(lambda: metrics.outcomes[("download", "", "closed")] == 1)
            await settle(lambda: not app_tasks())
    finally:
        set_metrics(previous)
    assert metrics.bytes[("download", "")] < 50_000_000


# -- uploads ------------------------------------------------------------------------------


async def test_upload_accepted_and_each_limit_refused(server: Server, framework: str) -> None:
    tally = Tally()
    picture = {"picture": ("a.png", b"p" * 5000, "image/png")}
    form = {"field": "value"}
    async with running(APPS[framework](tally), server) as (client, _port):
        accepted = await client.post("/upload", files=picture, data=form)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json() == [
            {"name": "field", "filename": None, "size": 5},
            {"name": "picture", "filename": "a.png", "size": 5000},
        ]

        refusals: list[tuple[dict[str, int | str], Any, type[UploadError], int]] = [
            ({"max_size": 1000}, picture, UploadTooLarge, 413),
            ({"max_part_size": 1000}, picture, UploadTooLarge, 413),
            ({"max_parts": 1}, picture, UploadTooLarge, 413),
            ({"allowed": "text/*"}, picture, UnsupportedMediaType, 415),
        ]
        for limits, upload, kind, status in refusals:
            refused = await client.post("/upload", params=limits, files=upload, data=form)
            assert refused.status_code == status, (limits, refused.text)
            assert refused.headers["content-type"] == "text/plain; charset=utf-8"
            assert refused.text == tally.refused[-1].message
            assert type(tally.refused[-1]) is kind

        not_multipart = await client.post("/upload", json={"a": 1})
        assert not_multipart.status_code == 415
        assert isinstance(tally.refused[-1], UnsupportedMediaType)

        truncated = await client.post(
            "/upload",
            content=b'--xyz\r\nContent-Disposition: form-data; name="f"\r\n\r\nhalf',
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        assert truncated.status_code == 400
        assert isinstance(tally.refused[-1], MalformedUpload)

        again = await client.post("/upload", files=picture)
        assert again.status_code == 200
    assert len(tally.uploads) == 2  # only the accepted uploads reached the end
    assert len(tally.refused) == 6


# -- exports ------------------------------------------------------------------------------


async def test_each_export_format(server: Server, framework: str) -> None:
    tally = Tally()
    expected = [{"id": index, "name": f"row {index}", "formula": "=1+1"} for index in range(500)]
    async with running(APPS[framework](tally), server) as (client, _port):
        as_json = await client.get("/export/json", params={"n": 500})
        as_ndjson = await client.get("/export/ndjson", params={"n": 500})
        as_csv = await client.get("/export/csv", params={"n": 500})
        empty = await client.get("/export/json", params={"n": 0})
    assert as_json.headers["content-type"].startswith("application/json")
    assert "rows.out" in as_json.headers["content-disposition"]
    assert as_json.json() == expected
    assert as_ndjson.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in as_ndjson.text.splitlines()] == expected
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert rows == [
        {"id": str(row["id"]), "name": row["name"], "formula": "'=1+1"} for row in expected
    ]
    assert empty.json() == []
    assert tally.finalized == tally.started == 4


async def test_export_failing_midway_is_never_complete(server: Server, framework: str) -> None:
    tally = Tally()
    async with running(APPS[framework](tally), server) as (client, port):
        received = bytearray()
        async with client.stream(
            "GET", "/export/json", params={"n": 50_000, "fail_at": 20_000}
        ) as reply:
            assert reply.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                await read_into(received, reply)
        assert received.startswith(b"[")
        assert not received.rstrip().endswith(b"]")
        raw = await raw_get(port, "/export/csv?n=50000&fail_at=20000")
        assert not raw.endswith(b"0\r\n\r\n")
        await settle(lambda: tally.finalized == tally.started == 2)


# -- inside middleware ------------------------------------------------------------------


async def test_behind_base_http_middleware(server: Server) -> None:
    """BaseHTTPMiddleware runs the endpoint in its own task and wraps receive/send."""
    tally = Tally()
    app = starlette_app(tally)

    async def passthrough(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-seen"] = "yes"
        return response

    app.add_middleware(BaseHTTPMiddleware, dispatch=passthrough)
    async with running(app, server) as (client, port):
        reply = await client.get("/lines", params={"n": 500})
        assert reply.headers["x-seen"] == "yes"
        assert reply.content == lines(list(range(500)))
        failed = await client.get("/fail-before")
        assert failed.status_code == 500
        socks = await asyncio.gather(*(open_raw(port, "/forever") for _ in range(20)))
        try:
            await asyncio.gather(*(recv_until(sock, b"\n3\n") for sock in socks))
        finally:
            for sock in socks:
                sock.close()
        await settle(lambda: tally.finalized == tally.started == 22)
        await settle(lambda: not app_tasks())


# -- zero copy ----------------------------------------------------------------------------


async def test_pathsend_for_whole_files_under_granian(files: Tally) -> None:
    """granian offers ``http.response.pathsend``: a whole file goes by path, its body never
    iterated; a range still goes through the body."""
    content = (files.root / "data.bin").read_bytes()
    port = free_port()
    argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1", "tests._pathsend_app:app"]
    env = {"STREAMFX_TEST_ROOT": str(files.root)}
    async with (
        serve_command(argv, port, env) as (host, _),
        httpx.AsyncClient(base_url=f"http://{host}:{port}") as client,
    ):
        whole = await client.get("/files/data.bin")
        assert whole.status_code == 200
        assert whole.headers["content-length"] == str(SIZE)
        assert whole.content == content
        assert (await client.get("/stats")).json() == {"opened": 0, "closed": 0}

        part = await client.get("/files/data.bin", headers={"range": "bytes=10-19"})
        assert part.status_code == 206
        assert part.content == content[10:20]
        assert (await client.get("/stats")).json() == {"opened": 1, "closed": 1}


# -- Litestar -----------------------------------------------------------------------------


def litestar_app(tally: Tally) -> Litestar:
    """`to_asgi` mounted in Litestar through ``@asgi`` route handlers."""

    @asgi("/lines", copy_scope=True)
    async def lines_handler(
        scope: LitestarScope, receive: LitestarReceive, send: LitestarSend
    ) -> None:
        query = parse_qs(scope["query_string"].decode())
        count = int(query.get("n", ["10"])[0])
        app = to_asgi(text_response(body_of(tally, count)))
        await app(scope, receive, send)  # type: ignore[arg-type]

    @asgi("/forever", copy_scope=True)
    async def forever_handler(
        scope: LitestarScope, receive: LitestarReceive, send: LitestarSend
    ) -> None:
        app = to_asgi(text_response(body_of(tally, None, delay=0.001)))
        await app(scope, receive, send)  # type: ignore[arg-type]

    return Litestar(route_handlers=[lines_handler, forever_handler])


async def test_mounted_in_litestar(server: Server) -> None:
    tally = Tally()
    async with running(litestar_app(tally), server) as (client, port):
        reply = await client.get("/lines", params={"n": 300})
        assert reply.content == lines(list(range(300)))
        head = await client.head("/lines")
        assert head.status_code == 200
        assert head.content == b""
        socks = await asyncio.gather(*(open_raw(port, "/forever") for _ in range(20)))
        try:
            await asyncio.gather(*(recv_until(sock, b"\n3\n") for sock in socks))
        finally:
            for sock in socks:
                sock.close()
        await settle(lambda: tally.finalized == tally.started == 21)
        await settle(lambda: not app_tasks())


# -- the ASGI contract without a server ---------------------------------------------------
# Servers here never make `send` raise; ASGI 2.4 allows it, so the adapter's answer to it
# is checked by calling the application directly.


def http_scope(method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/", "headers": [(b"host", b"test")]}


async def test_send_raising_oserror_is_a_disconnect() -> None:
    tally = Tally()
    sent: list[dict[str, Any]] = []
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if len(sent) == 3:
            raise ConnectionResetError("peer went away")
        sent.append(message)

    completed = await send_response(
        text_response(body_of(tally, None, delay=0.001)), http_scope(), receive, send
    )
    assert completed is False
    assert [message["type"] for message in sent] == ["http.response.start"] + [
        "http.response.body"
    ] * 2
    assert tally.finalized == tally.started == 1
    assert not app_tasks()


async def test_cancelled_by_the_server_closes_the_body() -> None:
    tally = Tally()
    never = asyncio.Event()
    sending = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sending.set()

    app = to_asgi(text_response(body_of(tally, None, delay=0.001)))

    async def run() -> None:
        await app(http_scope(), receive, send)

    task = asyncio.create_task(run())
    await sending.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tally.finalized == tally.started == 1
    assert not app_tasks()


def test_works_without_starlette() -> None:
    """Starlette is optional: imported only by `to_asgi`, and only if it is installed."""
    script = """
import sys
import streamfx.adapters.asgi as adapter
assert "starlette" not in sys.modules, "importing the adapter imported starlette"
sys.modules["starlette"] = None  # as if it were not installed
from streamfx import StreamResponse
async def body():
    yield b"x"
app = adapter.to_asgi(StreamResponse(200, [], body()))
assert type(app) is adapter.StreamingASGIResponse, type(app)
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
        raise DownloadError("gone meanwhile", status=404)

    response = StreamResponse(200, [], once(b"never"), respond_to=respond_to)
    assert await send_response(response, http_scope(), receive, send) is False
    assert sent[0]["status"] == 404
    assert sent[1]["body"] == b"Not Found"


# -- batching and shutdown --------------------------------------------------------------


async def test_backlog_goes_out_in_batches(server: Server) -> None:
    """A producer far ahead of the client: many events per body message (per write)."""
    tally = Tally()
    inner = starlette_app(tally)
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
    assert reply.content == lines(list(range(20_000)))
    assert bodies <= 20_000 // 8


async def test_shutdown_with_open_streams_ends_them(server: Server) -> None:
    """Stopping the server with streams open ends them (the server's grace period,
    then cancellation): every finalizer runs, no task is left, nothing hangs."""
    tally = Tally()
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # hypercorn cancels its connection tasks at shutdown, and asyncio's stream
        # callback then logs their CancelledError: the server's doing, not the app's.
        hypercorn_cancelled = str(context.get("message", "")).startswith(
            "Exception in callback StreamReaderProtocol.connection_made"
        ) and isinstance(context.get("exception"), asyncio.CancelledError)
        if not (server == "hypercorn" and hypercorn_cancelled) and previous is not None:
            previous(loop, context)

    loop.set_exception_handler(handler)
    socks: list[socket.socket] = []
    try:
        async with running(starlette_app(tally), server) as (_client, port):
            socks += await asyncio.gather(*(open_raw(port, "/forever") for _ in range(10)))
            await asyncio.gather(*(recv_until(sock, b"\n3\n") for sock in socks))
        # uvicorn cancels the requests still running after its grace period and
        # returns without waiting for them: their cleanup follows at once.
        await settle(lambda: tally.finalized == tally.started == 10)
        await settle(lambda: not app_tasks())
    finally:
        loop.set_exception_handler(previous)
        for sock in socks:
            sock.close()


async def test_request_shutdown_ends_sse_streams_cleanly(server: Server) -> None:
    """`request_shutdown()`: open SSE streams send their farewell and end cleanly (the
    chunked body's terminating chunk), so the server can stop at once."""
    tally = Tally()
    socks: list[socket.socket] = []
    try:
        async with running(starlette_app(tally), server) as (_client, port):
            path = "/sse?n=1000&gap=0.5&heartbeat=10"
            socks += await asyncio.gather(*(open_raw(port, path) for _ in range(5)))
            await asyncio.gather(*(recv_until(sock, b"data: event 0\n") for sock in socks))
            request_shutdown()
            ends = await asyncio.gather(*(read_all_slowly(sock) for sock in socks))
            for raw in ends:
                assert b"event: shutdown\ndata: bye\n\n" in raw
                assert raw.endswith(b"\r\n0\r\n\r\n")
            await settle(lambda: tally.finalized == tally.started == 5)
            await settle(lambda: not app_tasks())
    finally:
        reset_shutdown()
        for sock in socks:
            sock.close()


async def test_upload_cut_by_a_disconnect_is_refused(server: Server) -> None:
    tally = Tally()
    async with running(starlette_app(tally), server) as (_client, port):
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            head = (
                "POST /upload HTTP/1.1\r\nHost: test\r\n"
                "Content-Type: multipart/form-data; boundary=xyz\r\n"
                "Content-Length: 100000\r\n\r\n"
            )
            part = b'--xyz\r\nContent-Disposition: form-data; name="f"\r\n\r\n' + b"a" * 1000
            await loop.sock_sendall(sock, head.encode() + part)
            await asyncio.sleep(0.1)
        finally:
            sock.close()
        await settle(lambda: len(tally.refused) == 1)
    assert isinstance(tally.refused[0], MalformedUpload)
    assert "disconnected" in tally.refused[0].message
    assert tally.uploads == []


# -- a client that stops reading --------------------------------------------------------


async def test_a_client_that_stops_reading_is_gone_after_the_write_timeout(server: Server) -> None:
    tally = Tally()

    async def endless() -> AsyncIterator[bytes]:
        tally.started += 1
        try:
            while True:
                tally.produced += 1
                yield b"x" * 65536
        finally:
            tally.finalized += 1

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        response = StreamResponse(200, [("content-type", "application/octet-stream")], endless())
        await to_asgi(response, write_timeout=0.3)(scope, receive, send)

    async with serve(app, server) as (_host, port):
        sock = await open_raw(port, "/", rcvbuf=4096)  # connected, but never reads
        try:
            await settle(lambda: tally.started == 1)
            await settle(lambda: tally.finalized == 1, seconds=5)
            # the server's buffers filled up, then the stall was noticed and cut
            assert tally.produced < 1000
            await settle(lambda: not app_tasks())
        finally:
            sock.close()


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
    tally = Tally()

    async def endless() -> AsyncIterator[bytes]:
        tally.started += 1
        try:
            while True:
                yield b"x" * 65536
        finally:
            tally.finalized += 1

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
            await settle(lambda: tally.finalized == STALLED, seconds=10)
            # the server's side of every connection is closed: only the clients' remain
            await settle(lambda: open_sockets() <= before + STALLED, seconds=5)
        finally:
            for sock in clients:
                sock.close()
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
    evictions = [record for record in caplog.records if "write_timeout" in record.getMessage()]
    assert len(evictions) == STALLED
    assert {record.levelno for record in evictions} == {logging.INFO}


def test_write_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="write_timeout"):
        to_asgi(StreamResponse(200, [], once(b"")), write_timeout=0)
