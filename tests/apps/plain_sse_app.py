"""An app written without any streamfx setup (no lifespan, no `drain_on_signals`): one
endless SSE route with a farewell, and a plain route to tell that the server is up.
The shutdown tests run it under each server and send SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import streamfx
from streamfx.adapters.asgi import to_asgi

FAREWELL = streamfx.ServerSentEvent(event="shutdown", data="server restarting", retry=3000)


async def ticks(interval: float = 0.5) -> AsyncIterator[str]:
    n = 0
    while True:
        yield f"tick {n}"
        n += 1
        await asyncio.sleep(interval)


async def events(request: Request) -> object:
    return to_asgi(streamfx.sse(ticks(), farewell=FAREWELL))


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ready")


app = Starlette(routes=[Route("/events", events), Route("/", ready)])
