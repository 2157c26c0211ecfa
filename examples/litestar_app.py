"""streamfx on Litestar, typed: SSE, exports, a download with Range and HEAD, an upload
and a broadcast, with dataclasses as items and no ``serialize=``.

Run:  python examples/litestar_app.py [--host 127.0.0.1] [--port 8000] [--file-mb 64]
 or:  STREAMFX_FILES=/srv/files uvicorn --factory examples.litestar_app:app_from_env

    curl -N localhost:8000/job/events                    # SSE of dataclasses
    curl -OJ 'localhost:8000/export/csv?rows=100000'     # also ndjson, json
    curl -r 0-99 localhost:8000/files/data.bin | wc -c   # Range: 206, 100 bytes
    curl -I localhost:8000/files/data.bin                # HEAD: headers only
    curl -F 'file=@notes.txt;type=text/plain' localhost:8000/upload
    curl -N localhost:8000/news/events &                 # a broadcast...
    curl -H 'content-type: application/json' -d '{"title": "hi"}' localhost:8000/news

A handler returns ``to_litestar(...)``, a Litestar ``Response``, annotated as such
(`StreamingLitestarResponse`): no cast, and Litestar sends it without serializing it.
``media_type=`` on a route documents the stream in ``/schema/openapi.json``; the
response's own ``Content-Type`` is what is sent. The download is one handler for GET and
HEAD (``@route``): Litestar's ``@head`` handlers may not return a body.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

from litestar import Litestar, Request, Response, get, post, route
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody

from streamfx import DownloadError, ServerSentEvent, UploadError, download, export, sse
from streamfx.adapters.litestar import StreamingLitestarResponse, error_response, parts, to_litestar
from streamfx.broadcast import Broadcast

MAX_SIZE, MAX_PART_SIZE, MAX_PARTS = 8 << 20, 5 << 20, 4
UPLOAD_TYPES = ("text/plain", "text/csv", "application/json", "image/png", "image/jpeg")
EXPORT_FORMATS = ("json", "ndjson", "csv")
EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


@dataclasses.dataclass
class Progress:
    step: int
    total: int


@dataclasses.dataclass
class Order:
    id: int
    customer: str
    amount: float
    placed: str


@dataclasses.dataclass
class News:
    title: str
    body: str = ""


def last_event_number(header: str | None) -> int:
    """The event number a ``Last-Event-ID`` names, or 0 when it is not 1 to 18 ASCII
    digits (the header is untrusted)."""
    if header and len(header) <= 18 and header.isascii() and header.isdigit():
        return int(header)
    return 0


def orders(count: int) -> Iterator[Order]:
    for i in range(1, count + 1):
        placed = (EPOCH + datetime.timedelta(minutes=i)).isoformat()
        yield Order(i, f"customer-{i % 9973}", i * 7919 % 100_000 / 100, placed)


def create_app(files: Path) -> Litestar:
    """The app, serving the files under `files`."""
    hub = Broadcast(name="news")

    @get("/job/events", media_type="text/event-stream")
    async def job_events(
        last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
        steps: FromQuery[int] = 50,
        interval: FromQuery[float] = 0.2,
    ) -> StreamingLitestarResponse:
        after = last_event_number(last_event_id)

        async def job() -> AsyncIterator[Progress | ServerSentEvent]:
            for step in range(after + 1, steps + 1):
                await asyncio.sleep(interval)
                yield Progress(step, steps)  # a dataclass: no serialize=
            yield ServerSentEvent("{}", event="done", id=str(steps + 1))

        return to_litestar(sse(job(), heartbeat=5.0, retry=1000, name="job"))

    @get("/export/{fmt:str}", media_type="application/octet-stream")
    async def export_orders(
        fmt: FromPath[str], rows: FromQuery[int] = 100_000
    ) -> StreamingLitestarResponse:
        if fmt not in EXPORT_FORMATS:
            raise NotFoundException(f"no export format {fmt!r}; try json, ndjson or csv")
        return to_litestar(
            export(orders(rows), fmt, filename=f"orders.{fmt}", name=f"export-{fmt}")
        )

    @route("/files/{name:path}", http_method=["GET", "HEAD"], media_type="application/octet-stream")
    async def file(name: FromPath[str]) -> StreamingLitestarResponse:
        try:  # download() refuses a path before any response exists
            return to_litestar(download(name.removeprefix("/"), root=files))  # Range, HEAD
        except DownloadError as exc:
            return error_response(exc)  # 403 / 404, short text/plain

    @post("/upload", status_code=200)
    async def upload(request: Request[Any, Any, Any]) -> Response[Any]:
        received = []
        try:
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
                    received.append(
                        {
                            "field": part.name,
                            "filename": part.filename,
                            "bytes": size,
                            "sha256": digest.hexdigest(),
                        }
                    )
        except UploadError as exc:
            return error_response(exc)  # 413 / 415 / 400 / 408 with the reason
        return Response({"parts": received})

    @post("/news", status_code=200)
    async def publish(data: JSONBody[News]) -> dict[str, str]:
        return {"id": await hub.publish("news", data)}  # a dataclass: no serialize=

    @get("/news/events", media_type="text/event-stream")
    async def news_events(
        last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
    ) -> StreamingLitestarResponse:
        return to_litestar(hub.sse("news", last_event_id=last_event_id))

    return Litestar(route_handlers=[job_events, export_orders, file, upload, publish, news_events])


def write_file(path: Path, megabytes: int) -> None:
    block = hashlib.sha256(b"streamfx").digest() * (1 << 15)  # 1 MiB
    with path.open("wb") as out:
        for _ in range(megabytes):
            out.write(block)


def app_from_env() -> Litestar:
    """The app over ``$STREAMFX_FILES`` (default: the current directory)."""
    return create_app(Path(os.environ.get("STREAMFX_FILES", ".")))


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description="streamfx on Litestar")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--file-mb", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamfx-litestar-") as directory:
        write_file(Path(directory) / "data.bin", args.file_mb)
        uvicorn.run(create_app(Path(directory)), host=args.host, port=args.port)
