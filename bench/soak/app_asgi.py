"""The soak's ASGI app (Starlette): streamfx's `to_asgi`, or sse-starlette's
``EventSourceResponse`` when ``SOAK_IMPL=sse-starlette`` (the peer). Served by uvicorn
(and by anything else that speaks ASGI). Routes: see `bench.soak.server_side`."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import streamfx
from bench.soak.server_side import (
    Params,
    configure_logging,
    install_hook,
    source,
    stats,
    streamfx_export,
    streamfx_sse,
    tasks_on,
)
from streamfx.adapters.asgi import to_asgi

configure_logging()
PEER = os.environ.get("SOAK_IMPL") == "sse-starlette"


async def sse_route(request: Request) -> Any:
    params = Params.parse(request.query_params)
    if PEER:
        from sse_starlette import EventSourceResponse

        return EventSourceResponse(
            source(params), ping=max(1, round(params.heartbeat)), send_timeout=params.write_timeout
        )
    return to_asgi(streamfx_sse(params), write_timeout=params.write_timeout)


async def export_route(request: Request) -> Any:
    if PEER:
        return PlainTextResponse("n/a", status_code=404)
    return to_asgi(streamfx_export(request.query_params))


async def hook_route(request: Request) -> Response:
    if PEER:
        return PlainTextResponse("n/a", status_code=404)
    install_hook(request.query_params.get("mode", "none"))
    return PlainTextResponse("ok")


async def ping(request: Request) -> Response:
    return PlainTextResponse("pong")


async def stats_route(request: Request) -> Response:
    return JSONResponse(stats(lambda: tasks_on(asyncio.get_running_loop())))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    if not PEER:
        streamfx.drain_on_signals()  # uvicorn has installed its handlers by now
    yield


app = Starlette(
    routes=[
        Route("/sse", sse_route),
        Route("/export", export_route),
        Route("/hook", hook_route),
        Route("/ping", ping),
        Route("/stats", stats_route),
    ],
    lifespan=lifespan,
)
