"""`streamfx.adapters.asgi` under real servers (uvicorn, hypercorn) with real clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from _servers import SERVERS, Server, serve
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamfx import BufferPolicy, StreamResponse
from streamfx._batching import encode_batches
from streamfx.adapters.asgi import to_asgi
from streamfx.metrics import InMemoryMetrics

pytestmark = pytest.mark.parametrize("server", SERVERS)


@dataclass
class Tally:
    """What the app's bodies did, shared with the test (same process, same loop)."""

    started: int = 0
    finalized: int = 0
    produced: int = 0
    metrics: InMemoryMetrics = field(default_factory=InMemoryMetrics)


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
    }


def starlette_app(tally: Tally) -> Starlette:
    def endpoint(make: Callable[[Request], StreamResponse]) -> Callable[..., Any]:
        async def handler(request: Request) -> Response:
            app = to_asgi(make(request))
            assert isinstance(app, Response)
            return app

        return handler

    return Starlette(
        routes=[
            Route(path, endpoint(make), methods=["GET", "HEAD"])
            for path, make in routes(tally).items()
        ]
    )


def fastapi_app(tally: Tally) -> FastAPI:
    app = FastAPI()
    for path, make in routes(tally).items():

        def handler(request: Request, make: Callable[[Request], StreamResponse] = make) -> Any:
            return to_asgi(make(request))

        app.add_api_route(path, handler, methods=["GET", "HEAD"])
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
    assert tally.finalized == tally.started == 2
    assert tally.metrics.outcomes[("test", "", "completed")] == 2


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
