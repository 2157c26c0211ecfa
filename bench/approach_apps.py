"""The server side of `bench/approaches.py`: one SSE stream, written every usual way.

Every approach sends the same source (`events`) as Server-Sent Events. The source
counts what it produced and whether its ``finally`` ran, per approach, in `STATS`;
``GET /stats`` answers them as JSON with the number of live asyncio tasks, so the
client can tell how far a producer ran ahead of a slow reader and what a disconnect
left behind.

ASGI (served by uvicorn):

- ``generator``: an async generator formatting each event, into Starlette's
  ``StreamingResponse`` (approach 1);
- ``queue``: a producer task feeding a bounded ``asyncio.Queue(64)`` (approach 2);
  ``queue-unbounded`` is the same with ``asyncio.Queue()``, the mistake to avoid;
- ``anyio``: a producer task feeding an anyio memory object stream of 64 (approach 2);
- ``aiostream``: an aiostream pipeline (``stream.iterate | pipe.map``) (approach 3);
- ``streamfx-suspend``, ``streamfx-sliding``, ``streamfx-dropping``:
  ``to_asgi(sse(source, buffer=BufferPolicy(64, strategy)))`` (approach 4);
- ``sse-starlette``: ``EventSourceResponse(source)``;
- ``fastapi``: FastAPI's own ``EventSourceResponse`` (a route that yields).

``export-streamfx`` (``to_asgi(export(rows, "ndjson"))``) and ``export-recipe``
(``StreamingResponse`` of ``json.dumps(row) + "\\n"``) are there for the error cases: a
response whose first chunk is data, not an opening comment.

aiohttp (its own server): ``aiohttp-sse`` (``sse_response`` and ``send`` per event)
and ``streamfx-aiohttp`` (``to_aiohttp(request, sse(...suspend 64))``).

The query string shapes the source: ``count`` events (endless when absent), ``gap``
seconds before each, ``fail`` the index at which it raises, ``yield=1`` to pass
control to the loop before every event (a producer that awaits something).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, suppress
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request  # at module level: FastAPI resolves the annotation

ASGI_APPROACHES = (
    "generator",
    "queue",
    "queue-unbounded",
    "anyio",
    "aiostream",
    "streamfx-suspend",
    "streamfx-sliding",
    "streamfx-dropping",
    "sse-starlette",
    "fastapi",
)
AIOHTTP_APPROACHES = ("aiohttp-sse", "streamfx-aiohttp")
EXPORTS = ("export-streamfx", "export-recipe")  # NDJSON of the same source, for errors
CAPACITY = 64
PAD = "x" * 100  # every event carries ~120 bytes of data

STATS: dict[str, Counter[str]] = {
    "opened": Counter(),
    "finalized": Counter(),
    "produced": Counter(),
}


def event_bytes() -> int:
    """The size of one encoded event, for the report."""
    return len(f"data: {0} {time.perf_counter():.6f} {PAD}\n\n".encode())


async def events(name: str, query: dict[str, str]) -> AsyncGenerator[str]:
    """The shared source: ``"<index> <perf_counter at production> <padding>"``."""
    count = int(query["count"]) if "count" in query else None
    gap = float(query.get("gap", 0))
    fail = int(query["fail"]) if "fail" in query else None
    pass_control = query.get("yield") == "1"
    produced = STATS["produced"]
    STATS["opened"][name] += 1
    try:
        index = 0
        while count is None or index < count:
            if index == fail:
                raise RuntimeError("the source failed")
            if gap:
                await asyncio.sleep(gap)
            elif pass_control:
                await asyncio.sleep(0)
            produced[name] += 1
            yield f"{index} {time.perf_counter():.6f} {PAD}"
            index += 1
    finally:
        STATS["finalized"][name] += 1


def stats() -> bytes:
    snapshot: dict[str, Any] = {key: dict(value) for key, value in STATS.items()}
    snapshot["tasks"] = len(asyncio.all_tasks())
    return json.dumps(snapshot).encode()


def query_of(raw: bytes | str) -> dict[str, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return {key: values[0] for key, values in parse_qs(text).items()}


# -- approaches 1-3, as a careful user writes them --------------------------------------

_DONE = object()


async def plain_generator(source: AsyncIterator[str]) -> AsyncIterator[str]:
    async for data in source:
        yield f"data: {data}\n\n"


async def through_queue(source: AsyncGenerator[str], maxsize: int) -> AsyncIterator[str]:
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize)

    async def produce() -> None:
        try:
            async with aclosing(source):
                async for data in source:
                    await queue.put(data)
        except Exception as exc:
            await queue.put(exc)
        else:
            await queue.put(_DONE)

    task = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not _DONE:
            if isinstance(item, Exception):
                raise item
            yield f"data: {item}\n\n"
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def through_anyio(source: AsyncGenerator[str]) -> AsyncIterator[str]:
    import anyio

    send, receive = anyio.create_memory_object_stream[str](CAPACITY)

    async def produce() -> None:
        async with send, aclosing(source):
            async for data in source:
                await send.send(data)

    task = asyncio.create_task(produce())
    try:
        async with receive:
            async for data in receive:
                yield f"data: {data}\n\n"
        await task  # the producer's error, if any
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def through_aiostream(source: AsyncIterator[str]) -> AsyncIterator[str]:
    from aiostream import pipe, stream

    def encode(data: str, *_: str) -> str:
        return f"data: {data}\n\n"

    pipeline = stream.iterate(source) | pipe.map(encode)
    async with pipeline.stream() as streamer:
        async for chunk in streamer:
            yield chunk


# -- the servers -----------------------------------------------------------------------


def build_asgi_app() -> Any:
    from fastapi import FastAPI
    from fastapi.sse import EventSourceResponse as FastAPIEventSourceResponse
    from sse_starlette import EventSourceResponse
    from starlette.responses import Response, StreamingResponse

    from streamfx import BufferPolicy, export, sse
    from streamfx.adapters.asgi import to_asgi

    async def rows(source: AsyncIterator[str]) -> AsyncIterator[dict[str, str]]:
        async for data in source:
            yield {"event": data}

    async def ndjson(source: AsyncIterator[str]) -> AsyncIterator[str]:
        async for row in rows(source):
            yield json.dumps(row) + "\n"

    fastapi_app = FastAPI()

    @fastapi_app.get("/fastapi", response_class=FastAPIEventSourceResponse)
    async def fastapi_events(request: Request) -> AsyncIterator[str]:
        async for item in events("fastapi", dict(request.query_params)):
            yield item

    def streaming(body: AsyncIterator[str]) -> Any:
        return StreamingResponse(body, media_type="text/event-stream")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        name = scope["path"].strip("/")
        if name == "stats":
            await Response(stats(), media_type="application/json")(scope, receive, send)
            return
        if name == "fastapi":
            await fastapi_app(scope, receive, send)
            return
        source = events(name, query_of(scope["query_string"]))
        response: Any
        if name == "generator":
            response = streaming(plain_generator(source))
        elif name == "queue":
            response = streaming(through_queue(source, CAPACITY))
        elif name == "queue-unbounded":
            response = streaming(through_queue(source, 0))
        elif name == "anyio":
            response = streaming(through_anyio(source))
        elif name == "aiostream":
            response = streaming(through_aiostream(source))
        elif name.startswith("streamfx-"):
            strategy: Any = name.removeprefix("streamfx-")
            response = to_asgi(sse(source, buffer=BufferPolicy(CAPACITY, strategy)))
        elif name == "export-streamfx":
            response = to_asgi(export(rows(source), "ndjson"))
        elif name == "export-recipe":
            response = StreamingResponse(ndjson(source), media_type="application/x-ndjson")
        elif name == "sse-starlette":
            response = EventSourceResponse(source)
        else:
            response = Response(status_code=404)
        await response(scope, receive, send)

    return app


def serve_asgi(fd: int) -> None:
    import logging

    import uvicorn

    logging.disable(logging.CRITICAL)  # the error cases log tracebacks by design

    uvicorn.run(
        build_asgi_app(),
        fd=fd,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="critical",
        access_log=False,
        backlog=4096,
    )


def serve_aiohttp(fd: int) -> None:
    import logging
    import socket

    from aiohttp import web
    from aiohttp_sse import sse_response

    from streamfx import BufferPolicy, sse
    from streamfx.adapters.aiohttp import to_aiohttp

    async def with_aiohttp_sse(request: web.Request) -> web.StreamResponse:
        source = events("aiohttp-sse", query_of(request.query_string))
        async with aclosing(source), sse_response(request) as response:
            async for data in source:
                await response.send(data)
        return response

    async def with_streamfx(request: web.Request) -> web.StreamResponse:
        source = events("streamfx-aiohttp", query_of(request.query_string))
        policy = BufferPolicy(CAPACITY, "suspend")
        return await to_aiohttp(request, sse(source, buffer=policy))

    async def stats_route(request: web.Request) -> web.Response:
        return web.Response(body=stats(), content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/aiohttp-sse", with_aiohttp_sse)
        app.router.add_get("/streamfx-aiohttp", with_streamfx)
        app.router.add_get("/stats", stats_route)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket(fileno=fd)
        await web.SockSite(runner, sock, backlog=4096).start()
        await asyncio.get_running_loop().create_future()  # until terminated

    logging.disable(logging.CRITICAL)  # the error cases log tracebacks by design
    asyncio.run(main())
