"""What one idle SSE connection holds on aiohttp, side by side: ``python -m
bench.idle_sse_aiohttp --census N`` (``--contenders a,b``, ``--json PATH``).

The census of `bench.idle_sse_asgi` (`bench._census`: RSS per connection without
tracing, then in a tracing server the traced bytes, tasks, objects by type, bytes
objects, and the traced bytes by package and line), with an aiohttp server (default
asyncio loop, as the soak's aiohttp app runs) in place of uvicorn, for:

- ``streamfx``: ``to_aiohttp(request, sse(never()))``;
- ``aiohttp-sse``: ``sse_response(request)`` around a source that never yields (its
  ping every 15 s, as streamfx's heartbeat);
- ``raw``: a ``web.StreamResponse`` prepared, one comment written, then a wait that
  never ends (the floor: aiohttp's own cost of a connection and its handler).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench import _census
from bench.idle_sse_asgi import TRACED_FRAMES, census_report

CONTENDERS = ("streamfx", "aiohttp-sse", "raw")


def build_app(census_dir: Path | None) -> Any:
    from aiohttp import web
    from aiohttp_sse import sse_response

    from streamfx import sse
    from streamfx.adapters.aiohttp import to_aiohttp

    async def never() -> AsyncIterator[str]:
        await asyncio.get_running_loop().create_future()
        yield "unreachable"

    async def idle(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "streamfx":
            return await to_aiohttp(request, sse(never()))
        if name == "aiohttp-sse":
            async with sse_response(request, ping_interval=15) as response:
                async for item in never():
                    await response.send(item)  # pragma: no cover - never reached
            peer: web.StreamResponse = response
            return peer
        raw = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await raw.prepare(request)
        await raw.write(b":\n\n")
        await asyncio.get_running_loop().create_future()
        return raw  # pragma: no cover - never reached

    async def census(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        snapshot = None if census_dir is None else census_dir / f"{name}.snapshot"
        response = web.json_response(_census.take(snapshot))
        response.force_close()
        return response

    app = web.Application()
    app.router.add_get("/idle/{name}", idle)
    app.router.add_get("/census/{name}", census)
    return app


def serve(fd: int, census_dir: Path | None) -> None:
    import tracemalloc

    from aiohttp import web

    if census_dir is not None:
        tracemalloc.start(TRACED_FRAMES)
    listener = socket.socket(fileno=fd)
    web.run_app(
        build_app(census_dir), sock=listener, access_log=None, print=None, shutdown_timeout=1
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="what an idle SSE connection holds, aiohttp")
    parser.add_argument("--census", type=int, metavar="N", default=2000)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-census", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(args.serve_fd, args.serve_census)
        return
    names = tuple(args.contenders.split(","))
    found = census_report(args.census, names, __spec__.name, "aiohttp (asyncio's loop)")
    if args.json:
        args.json.write_text(json.dumps(found))


if __name__ == "__main__":
    main()
