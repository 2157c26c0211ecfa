"""The soak's aiohttp app: streamfx's `to_aiohttp`, or aiohttp-sse's ``sse_response``
when ``SOAK_IMPL=aiohttp-sse`` (the peer). Run with ``python -m bench.soak.app_aiohttp
PORT``. Routes: see `bench.soak.server_side`."""

from __future__ import annotations

import asyncio
import os
import sys

from aiohttp import web

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
from streamfx.adapters.aiohttp import drain_on_shutdown, to_aiohttp

PEER = os.environ.get("SOAK_IMPL") == "aiohttp-sse"


async def sse_route(request: web.Request) -> web.StreamResponse:
    params = Params.parse(request.query)
    if PEER:
        from aiohttp_sse import sse_response

        async with sse_response(
            request, ping_interval=params.heartbeat, send_timeout=params.write_timeout
        ) as response:
            async for item in source(params):
                await response.send(str(item))
        peer_response: web.StreamResponse = response
        return peer_response
    return await to_aiohttp(request, streamfx_sse(params), write_timeout=params.write_timeout)


async def export_route(request: web.Request) -> web.StreamResponse:
    if PEER:
        return web.Response(status=404, text="n/a")
    return await to_aiohttp(request, streamfx_export(request.query))


async def hook_route(request: web.Request) -> web.StreamResponse:
    if PEER:
        return web.Response(status=404, text="n/a")
    install_hook(request.query.get("mode", "none"))
    return web.Response(text="ok")


async def ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="pong")


async def stats_route(request: web.Request) -> web.StreamResponse:
    return web.json_response(stats(lambda: tasks_on(asyncio.get_running_loop())))


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/sse", sse_route)
    app.router.add_get("/export", export_route)
    app.router.add_get("/hook", hook_route)
    app.router.add_get("/ping", ping)
    app.router.add_get("/stats", stats_route)
    if not PEER:
        drain_on_shutdown(app)
    return app


if __name__ == "__main__":
    configure_logging()
    web.run_app(
        create_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        shutdown_timeout=10,
        access_log=None,
        print=None,
        backlog=4096,
    )
