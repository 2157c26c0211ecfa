"""The soak's Quart app (`to_quart`), served by hypercorn. Routes: see
`bench.soak.server_side`."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Quart, request

import streamfx
from bench.soak.server_side import (
    Params,
    configure_logging,
    install_hook,
    stats,
    streamfx_export,
    streamfx_sse,
    tasks_on,
)
from streamfx.adapters.quart import to_quart

configure_logging()
app = Quart(__name__)


@app.before_serving
async def drain() -> None:
    streamfx.drain_on_signals()  # hypercorn has installed its handlers by now


@app.get("/sse")
async def sse_route() -> Any:
    params = Params.parse(request.args)
    return await to_quart(streamfx_sse(params), write_timeout=params.write_timeout)


@app.get("/export")
async def export_route() -> Any:
    return await to_quart(streamfx_export(request.args))


@app.get("/hook")
async def hook_route() -> str:
    install_hook(request.args.get("mode", "none"))
    return "ok"


@app.get("/ping")
async def ping() -> str:
    return "pong"


@app.get("/stats")
async def stats_route() -> dict[str, Any]:
    return stats(lambda: tasks_on(asyncio.get_running_loop()))
