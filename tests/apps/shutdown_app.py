"""An app for the shutdown test: one endless SSE stream, drained on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

import streamfx
from streamfx.adapters.asgi import to_asgi
from tests.apps.plain_sse_app import FAREWELL, ticks


async def events(request: Request) -> object:
    return to_asgi(streamfx.sse(ticks(0.05), farewell=FAREWELL))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    streamfx.drain_on_signals()  # uvicorn has installed its handlers by now
    yield


app = Starlette(routes=[Route("/events", events)], lifespan=lifespan)
