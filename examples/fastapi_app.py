"""streamfx on FastAPI, typed: SSE, exports, a download with Range and HEAD, an upload,
a broadcast, all with Pydantic models as items and a valid ``/openapi.json``.

Run:  python examples/fastapi_app.py [--host 127.0.0.1] [--port 8000] [--file-mb 64]
 or:  STREAMFX_FILES=/srv/files uvicorn --factory examples.fastapi_app:app_from_env

    curl -N localhost:8000/job/events                    # SSE of Pydantic models
    curl -OJ 'localhost:8000/export/csv?rows=100000'     # also ndjson, json
    curl -r 0-99 localhost:8000/files/data.bin | wc -c   # Range: 206, 100 bytes
    curl -I localhost:8000/files/data.bin                # HEAD: headers only
    curl -F 'file=@notes.txt;type=text/plain' localhost:8000/upload
    curl -N localhost:8000/news/events &                 # a broadcast...
    curl -H 'content-type: application/json' -d '{"title": "hi"}' localhost:8000/news

Every streamed route is annotated with what it returns (`StreamingASGIResponse`, a
Starlette ``Response``), so ``mypy --strict`` checks it and FastAPI documents it as a
response rather than a model. ``response_class=Response`` (a body FastAPI does not
describe) keeps FastAPI from listing ``application/json``, and
``responses=openapi(...)`` names the real media types. FastAPI's ``@app.get`` does not
answer HEAD: the download adds ``@app.head`` on the same function (an operation of its
own, so no duplicate operation id).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from streamfx import DownloadError, ServerSentEvent, UploadError, download, export, sse
from streamfx.adapters.asgi import (
    StreamingASGIResponse,
    error_response,
    openapi,
    parts,
    to_asgi,
)
from streamfx.broadcast import Broadcast

MAX_SIZE, MAX_PART_SIZE, MAX_PARTS = 8 << 20, 5 << 20, 4
UPLOAD_TYPES = ("text/plain", "text/csv", "application/json", "image/png", "image/jpeg")
EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


class Progress(BaseModel):
    step: int
    total: int


class Order(BaseModel):
    id: int
    customer: str
    amount: float
    placed: datetime.datetime


class News(BaseModel):
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
        placed = EPOCH + datetime.timedelta(minutes=i)
        yield Order(
            id=i, customer=f"customer-{i % 9973}", amount=i * 7919 % 100_000 / 100, placed=placed
        )


def create_app(files: Path) -> FastAPI:
    """The app, serving the files under `files`."""
    app = FastAPI(title="streamfx on FastAPI")
    hub = Broadcast(name="news")

    @app.get(
        "/job/events",
        response_class=Response,
        responses=openapi("text/event-stream", description="Progress events"),
    )
    async def job_events(
        steps: int = 50,
        interval: float = 0.2,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingASGIResponse:
        after = last_event_number(last_event_id)

        async def job() -> AsyncIterator[Progress | ServerSentEvent]:
            for step in range(after + 1, steps + 1):
                await asyncio.sleep(interval)
                yield Progress(step=step, total=steps)  # a Pydantic model: no serialize=
            yield ServerSentEvent("{}", event="done", id=str(steps + 1))

        return to_asgi(sse(job(), heartbeat=5.0, retry=1000, name="job"))

    @app.get(
        "/export/{fmt}",
        response_class=Response,
        responses=openapi("application/json", "application/x-ndjson", "text/csv"),
    )
    async def export_orders(
        fmt: Literal["json", "ndjson", "csv"], rows: int = 100_000
    ) -> StreamingASGIResponse:
        return to_asgi(export(orders(rows), fmt, filename=f"orders.{fmt}", name=f"export-{fmt}"))

    @app.get(
        "/files/{name:path}",
        response_class=Response,
        responses=openapi("application/octet-stream", errors=(403, 404, 416)),
    )
    @app.head("/files/{name:path}", response_class=Response)
    async def file(name: str) -> StreamingASGIResponse:
        try:  # download() refuses a path before any response exists
            return to_asgi(download(name, root=files))  # Range, 304, 416, HEAD
        except DownloadError as exc:
            return error_response(exc)  # 403 / 404, short text/plain

    @app.post("/upload", responses=openapi(errors=(400, 408, 413, 415)))
    async def upload(request: Request) -> Response:
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
        return JSONResponse({"parts": received})

    @app.post("/news")
    async def publish(news: News) -> dict[str, str]:
        return {"id": await hub.publish("news", news)}  # a Pydantic model: no serialize=

    @app.get(
        "/news/events",
        response_class=Response,
        responses=openapi("text/event-stream"),
    )
    async def news_events(
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingASGIResponse:
        return to_asgi(hub.sse("news", last_event_id=last_event_id))

    return app


def write_file(path: Path, megabytes: int) -> None:
    block = hashlib.sha256(b"streamfx").digest() * (1 << 15)  # 1 MiB
    with path.open("wb") as out:
        for _ in range(megabytes):
            out.write(block)


def app_from_env() -> FastAPI:
    """The app over ``$STREAMFX_FILES`` (default: the current directory)."""
    return create_app(Path(os.environ.get("STREAMFX_FILES", ".")))


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description="streamfx on FastAPI")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--file-mb", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamfx-fastapi-") as directory:
        write_file(Path(directory) / "data.bin", args.file_mb)
        uvicorn.run(create_app(Path(directory)), host=args.host, port=args.port)
