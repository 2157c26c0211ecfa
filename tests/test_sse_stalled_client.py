"""An `sse()` stream whose client stops reading, on a real server (issue 15, item 10):
once the client has been stalled for the buffer's `stall_after`, the stream's source is
not pulled any more while the connection is still open, so a stalled client costs
nothing per published event; the adapter's write timeout still evicts it and its
source is finalized.

The source follows a publisher through an upstream queue (as a subscriber of a
message bus does): what a paused stream does not pull stays queued there."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from streamfx import BufferPolicy, StreamResponse, sse
from streamfx.adapters.aiohttp import to_aiohttp
from streamfx.adapters.asgi import to_asgi
from tests._client import open_raw, wait_until
from tests._servers import serve, serve_aiohttp

EVENT = "x" * 16_384  # a few fill the socket buffers of a client that reads nothing
TICK = 0.002
QUEUED = 100  # published and never pulled: the source has stopped being pulled


class Feed:
    """One publisher ticking into the upstream queue of one stream's source."""

    def __init__(self) -> None:
        self.upstream: asyncio.Queue[str] = asyncio.Queue()
        self.pulled = 0
        self.finalized = asyncio.Event()

    async def source(self) -> AsyncIterator[str]:
        try:
            while True:
                item = await self.upstream.get()
                self.pulled += 1
                yield item
        finally:
            self.finalized.set()

    async def publish(self) -> None:
        while True:
            self.upstream.put_nowait(EVENT)
            await asyncio.sleep(TICK)


async def stalled_stream_is_paused_then_evicted(
    serving: Callable[[], contextlib.AbstractAsyncContextManager[int]], feed: Feed
) -> None:
    publisher = asyncio.create_task(feed.publish())
    try:
        async with serving() as port:
            client = await open_raw(port, "/", rcvbuf=4096)  # never reads
            with client:
                await wait_until(
                    lambda: feed.finalized.is_set() or feed.upstream.qsize() >= QUEUED,
                    "the stalled stream's source to stop being pulled",
                )
                assert not feed.finalized.is_set(), (
                    "the source was pulled until the write timeout ended the stream"
                )
                paused_at = feed.pulled
                await asyncio.wait_for(feed.finalized.wait(), 10)  # the write timeout
                assert feed.pulled == paused_at, "not pulled again before its end"
    finally:
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher


async def test_uvicorn_the_default_buffer_stops_pulling_a_stalled_client_s_source() -> None:
    """`sse()`'s default buffer (sliding 64, stall_after 0.25 s) under uvicorn."""
    feed = Feed()

    def response() -> Callable[..., Awaitable[None]]:
        return to_asgi(sse(feed.source(), heartbeat=None), write_timeout=4.0)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await response()(scope, receive, send)

    @contextlib.asynccontextmanager
    async def serving() -> AsyncIterator[int]:
        async with serve(app, "uvicorn") as (_host, port):
            yield port

    await stalled_stream_is_paused_then_evicted(serving, feed)


@pytest.mark.parametrize("strategy", ["sliding", "dropping"])
async def test_aiohttp_a_lossy_buffer_stops_pulling_a_stalled_client_s_source(
    strategy: Any,
) -> None:
    feed = Feed()

    async def handler(request: web.Request) -> web.StreamResponse:
        policy = BufferPolicy(8, strategy, stall_after=0.2)
        response: StreamResponse = sse(feed.source(), heartbeat=None, buffer=policy)
        return await to_aiohttp(request, response, write_timeout=2.0)

    @contextlib.asynccontextmanager
    async def serving() -> AsyncIterator[int]:
        app = web.Application()
        app.router.add_get("/", handler)
        async with serve_aiohttp(app) as (_host, port):
            yield port

    await stalled_stream_is_paused_then_evicted(serving, feed)
