"""streamfx on aiohttp: an SSE job, exports, a resumable download and an upload.

Run:  python examples/aiohttp_app.py [--host 127.0.0.1] [--port 8080]

    curl -N localhost:8080/job/events                    # SSE; resumes from Last-Event-ID
    curl -N -H 'Last-Event-ID: 15' localhost:8080/job/events
    curl -OJ 'localhost:8080/export/csv?rows=1000000'    # also ndjson, json
    curl -r 0-99 localhost:8080/file | wc -c             # Range: 206, 100 bytes
    curl -F 'file=@notes.txt;type=text/plain' localhost:8080/upload

The job is deterministic (step n is a function of n), so resuming after
``Last-Event-ID: n`` is simply starting at n + 1: no history to keep.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal, cast

from aiohttp import web

from streamfx import ServerSentEvent, download, export, request_shutdown, sse
from streamfx.adapters.aiohttp import parts, streamfx_errors, to_aiohttp

MAX_SIZE, MAX_PART_SIZE, MAX_PARTS = 8 << 20, 5 << 20, 4
UPLOAD_TYPES = ("text/plain", "text/csv", "application/json", "image/png", "image/jpeg")
FILE = web.AppKey("file", Path)


def number(request: web.Request, name: str, default: float, high: float) -> float:
    try:
        value = float(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a number") from None
    if not 0 <= value <= high:
        raise web.HTTPBadRequest(text=f"{name} must be between 0 and {high:g}")
    return value


def last_event_number(header: str | None) -> int:
    """The event number a ``Last-Event-ID`` names, or 0 (start over) when it is not 1 to
    18 ASCII digits. The header is untrusted: ``"²".isdigit()`` is true but ``int("²")``
    raises, ``int()`` refuses 5,000 digits, and ``int("٣")`` is 3."""
    if header and len(header) <= 18 and header.isascii() and header.isdigit():
        return int(header)
    return 0


async def job_events(request: web.Request) -> web.StreamResponse:
    steps = int(number(request, "steps", 50, 10_000))
    interval = number(request, "interval", 0.2, 10)
    after = last_event_number(request.headers.get("Last-Event-ID"))
    if after > steps:
        return web.Response(status=204)  # the job is over: EventSource stops reconnecting

    async def job() -> AsyncIterator[ServerSentEvent]:
        for step in range(after + 1, steps + 1):
            await asyncio.sleep(interval)
            data = json.dumps({"step": step, "total": steps})
            yield ServerSentEvent(data, event="progress", id=str(step))
        yield ServerSentEvent(json.dumps({"steps": steps}), event="done", id=str(steps + 1))

    return await to_aiohttp(request, sse(job(), heartbeat=5.0, retry=1000, name="job"))


def rows(n: int) -> Iterator[dict[str, Any]]:
    for i in range(1, n + 1):
        yield {"id": i, "customer": f"customer-{i % 9973}", "amount": i * 7919 % 100_000 / 100}


async def export_rows(request: web.Request) -> web.StreamResponse:
    fmt = request.match_info["format"]
    if fmt not in ("csv", "ndjson", "json"):
        raise web.HTTPNotFound(text=f"unknown format {fmt!r}")
    n = int(number(request, "rows", 1_000_000, 5_000_000))
    response = export(
        rows(n),
        cast(Literal["csv", "ndjson", "json"], fmt),
        filename=f"export-{n}.{fmt}",
        name=f"export-{fmt}",
    )
    return await to_aiohttp(request, response)


async def big_file(request: web.Request) -> web.StreamResponse:
    path = request.app[FILE]
    return await to_aiohttp(request, download(path, filename=path.name))


async def upload(request: web.Request) -> web.StreamResponse:
    # a refused upload leaves the block as aiohttp's 413, 415 or 400 with a clear message
    received = []
    async with parts(
        request,
        max_size=MAX_SIZE,
        max_part_size=MAX_PART_SIZE,
        max_parts=MAX_PARTS,
        allowed_types=UPLOAD_TYPES,
    ) as stream:
        async for part in stream:
            digest, size = hashlib.sha256(), 0
            async for chunk in part:
                digest.update(chunk)
                size += len(chunk)
            received.append({"field": part.name, "filename": part.filename, "bytes": size})
    return web.json_response({"parts": received})


def write_file(path: Path, megabytes: int) -> None:
    block = hashlib.sha256(b"streamfx").digest() * (1 << 15)  # 1 MiB
    with path.open("wb") as out:
        for _ in range(megabytes):
            out.write(block)


def create_app(file_mb: int = 64) -> web.Application:
    app = web.Application(middlewares=[streamfx_errors])  # StreamfxError -> 404/403, 413..., 503
    app.router.add_get("/job/events", job_events)
    app.router.add_get("/export/{format}", export_rows)
    app.router.add_get("/file", big_file)
    app.router.add_post("/upload", upload)

    async def generated_file(app: web.Application) -> AsyncIterator[None]:
        with tempfile.TemporaryDirectory(prefix="streamfx-aiohttp-") as directory:
            path = Path(directory) / f"data-{file_mb}MB.bin"
            await asyncio.to_thread(write_file, path, file_mb)
            app[FILE] = path
            yield

    async def end_streams(app: web.Application) -> None:
        request_shutdown()  # open SSE streams end cleanly instead of holding the shutdown

    app.cleanup_ctx.append(generated_file)
    app.on_shutdown.append(end_streams)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="streamfx on aiohttp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--file-mb", type=int, default=64)
    args = parser.parse_args()
    web.run_app(create_app(args.file_mb), host=args.host, port=args.port)
