"""An app for the shutdown test: one endless SSE stream, drained on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

import streamfx
from streamfx.adapters.asgi import to_asgi


async def ticks() -> AsyncIterator[str]:
    n = 0
    while True:
        yield f"tick {n}"
        n += 1
        await asyncio.sleep(0.05)


async def events(request: Request) -> object:
    farewell = streamfx.ServerSentEvent(event="shutdown", data="server restarting", retry=3000)
    return to_asgi(streamfx.sse(ticks(), farewell=farewell))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    streamfx.drain_on_signals()  # uvicorn has installed its handlers by now
    yield


app = Starlette(routes=[Route("/events", events)], lifespan=lifespan)
