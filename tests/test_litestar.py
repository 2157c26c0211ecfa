"""`streamfx.adapters.litestar` (issue 12): a handler returns ``to_litestar(...)``, a
Litestar ``Response``, under uvicorn with httpx (the example's routes at work:
tests/test_fastapi_litestar_examples.py).

Before it, a Litestar handler returning ``to_asgi(...)`` answered 500
(``SerializationException: Unsupported type``): Litestar serializes what is not its own
response. Here: the example passes ``mypy --strict`` without a cast; its OpenAPI
document is valid; the Litestar parts of a response (headers set on it or on the
route, cookies, background tasks) go out with the stream, on a Range answer too; and
`error_response` serves as a Litestar exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, Response, get
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import ResponseHeader
from litestar.params import FromPath
from openapi_spec_validator import validate

from examples.litestar_app import create_app
from streamfx import StreamfxError, StreamResponse, download
from streamfx.adapters.litestar import StreamingLitestarResponse, error_response, to_litestar
from tests._client import wait_until
from tests._mypy import assert_mypy_strict_passes
from tests._servers import serve


@pytest.fixture
async def example(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_app(tmp_path)) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as http,
    ):
        yield http


@contextlib.asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """`app` under uvicorn, and an httpx client for it."""
    async with (
        serve(app) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as http,
    ):
        yield http


async def lines(count: int) -> AsyncIterator[bytes]:
    for n in range(count):
        yield b"%d\n" % n


def text_stream(count: int = 3) -> StreamResponse:
    return StreamResponse(200, [("content-type", "text/plain")], lines(count))


# -- types and the API document -------------------------------------------------------


def test_the_example_passes_mypy_strict() -> None:
    assert_mypy_strict_passes("examples/litestar_app.py")


async def test_the_openapi_document_is_valid_and_names_the_media_types(
    example: httpx.AsyncClient,
) -> None:
    reply = await example.get("/schema/openapi.json")
    assert reply.status_code == 200, reply.text
    document = reply.json()
    validate(document)
    paths = document["paths"]

    def content(path: str, method: str = "get") -> list[str]:
        return list(paths[path][method]["responses"]["200"].get("content", {}))

    assert content("/job/events") == ["text/event-stream"]
    assert content("/news/events") == ["text/event-stream"]
    assert content("/files/{name}") == ["application/octet-stream"]
    assert set(paths["/files/{name}"]) == {"get", "head"}
    operations = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(operations) == len(set(operations))


# -- the Litestar parts of a response ---------------------------------------------------


async def test_headers_cookies_and_background_go_with_the_stream(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(bytes(range(256)) * 4)
    ran: list[str] = []

    async def after(what: str) -> None:
        ran.append(what)

    @get("/stream", response_headers=[ResponseHeader(name="x-route", value="r")])
    async def stream() -> StreamingLitestarResponse:
        response = to_litestar(text_stream())
        response.set_header("x-handler", "h")
        response.set_cookie("session", "s1")
        response.background = BackgroundTask(after, "stream")
        return response

    @get("/data")
    async def data() -> StreamingLitestarResponse:
        response = to_litestar(download(tmp_path / "data.bin"))
        response.set_header("x-handler", "h")
        return response

    async with serving(Litestar([stream, data])) as client:
        reply = await client.get("/stream")
        assert reply.status_code == 200
        assert reply.content == b"0\n1\n2\n"
        assert reply.headers["content-type"] == "text/plain"
        assert (reply.headers["x-route"], reply.headers["x-handler"]) == ("r", "h")
        assert reply.cookies["session"] == "s1"
        await wait_until(lambda: ran == ["stream"], "the background task")
        part = await client.get("/data", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206
        assert part.content == (bytes(range(256)) * 4)[10:20]
        assert part.headers["x-handler"] == "h"  # also on what for_request gave
        head = await client.head("/data")
        assert head.status_code == 405  # @get alone answers no HEAD: @route(GET, HEAD) does


async def test_the_status_is_the_stream_s_not_the_route_s() -> None:
    @get("/created", status_code=201)
    async def created() -> StreamingLitestarResponse:
        return to_litestar(StreamResponse(202, [], lines(1)))

    async with serving(Litestar([created])) as client:
        reply = await client.get("/created")
    assert (reply.status_code, reply.content) == (202, b"0\n")


async def test_error_response_as_a_litestar_exception_handler(tmp_path: Path) -> None:
    def on_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        return error_response(exc)

    @get("/files/{name:str}")
    async def files(name: FromPath[str]) -> StreamingLitestarResponse:
        return to_litestar(download(name, root=tmp_path))  # DownloadError left to Litestar

    app = Litestar([files], exception_handlers={StreamfxError: on_error})
    async with serving(app) as client:
        missing = await client.get("/files/nothing")
    assert (missing.status_code, missing.text) == (404, "Not Found")
    assert missing.headers["content-type"] == "text/plain; charset=utf-8"


async def test_an_error_before_the_first_chunk_is_answered_and_the_body_closed() -> None:
    closed = asyncio.Event()

    async def failing() -> AsyncIterator[bytes]:
        try:
            raise RuntimeError("the database is down")
            yield b""
        finally:
            closed.set()

    @get("/failing")
    async def fails() -> StreamingLitestarResponse:
        return to_litestar(StreamResponse(200, [], failing()))

    async with serving(Litestar([fails])) as client:
        reply = await client.get("/failing")
    assert (reply.status_code, reply.text) == (500, "Internal Server Error")
    assert closed.is_set()


def test_to_litestar_refuses_what_it_cannot_send() -> None:
    with pytest.raises(TypeError, match="StreamResponse"):
        to_litestar(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="write_timeout"):
        to_litestar(text_stream(), write_timeout=0)
