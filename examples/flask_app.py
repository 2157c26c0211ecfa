"""streamfx on Flask (WSGI): an SSE job, exports, a resumable download and an upload.

Run:  python examples/flask_app.py [--host 127.0.0.1] [--port 8081]   (waitress)
 or:  gunicorn -k gthread --threads 32 'examples.flask_app:create_app()'

    curl -N localhost:8081/job/events                    # SSE; resumes from Last-Event-ID
    curl -N -H 'Last-Event-ID: 15' localhost:8081/job/events
    curl -OJ 'localhost:8081/export/csv?rows=1000000'    # also ndjson, json
    curl -r 0-99 localhost:8081/file | wc -c             # Range: 206, 100 bytes
    curl -F 'file=@notes.txt;type=text/plain' localhost:8081/upload

``to_wsgi`` runs each async body on one background event loop and hands its chunks to
the server's thread as the server writes them. An SSE stream holds a server thread for
as long as it is open: give the server enough threads. The job is deterministic (step
n is a function of n), so resuming after ``Last-Event-ID: n`` starts at n + 1.
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
from wsgiref.types import WSGIApplication

from flask import Flask, Response, abort, jsonify, request

from streamfx import ServerSentEvent, UploadError, download, export, sse
from streamfx.adapters.wsgi import WSGIStream, error_response, parts, to_wsgi

MAX_SIZE, MAX_PART_SIZE, MAX_PARTS = 8 << 20, 5 << 20, 4
UPLOAD_TYPES = ("text/plain", "text/csv", "application/json", "image/png", "image/jpeg")


def number(name: str, default: float, high: float) -> float:
    try:
        value = float(request.args.get(name, default))
    except ValueError:
        abort(400, f"{name} must be a number")
    if not 0 <= value <= high:
        abort(400, f"{name} must be between 0 and {high:g}")
    return value


def rows(n: int) -> Iterator[dict[str, Any]]:
    for i in range(1, n + 1):
        yield {"id": i, "customer": f"customer-{i % 9973}", "amount": i * 7919 % 100_000 / 100}


def write_file(path: Path, megabytes: int) -> None:
    block = hashlib.sha256(b"streamfx").digest() * (1 << 15)  # 1 MiB
    with path.open("wb") as out:
        for _ in range(megabytes):
            out.write(block)


def last_event_number(header: str | None) -> int:
    """The event number a ``Last-Event-ID`` names, or 0 (start over) when it is not 1 to
    18 ASCII digits. The header is untrusted: ``"²".isdigit()`` is true but ``int("²")``
    raises, ``int()`` refuses 5,000 digits, and ``int("٣")`` is 3."""
    if header and len(header) <= 18 and header.isascii() and header.isdigit():
        return int(header)
    return 0


def create_app(file_mb: int = 64) -> Flask:
    app = Flask(__name__)
    directory = tempfile.TemporaryDirectory(prefix="streamfx-flask-")
    big = Path(directory.name) / f"data-{file_mb}MB.bin"
    write_file(big, file_mb)
    app.extensions["streamfx-demo-dir"] = directory  # removed when the app is collected

    @app.get("/job/events")
    def job_events() -> WSGIStream | Response:
        steps = int(number("steps", 50, 10_000))
        interval = number("interval", 0.2, 10)
        after = last_event_number(request.headers.get("Last-Event-ID"))
        if after > steps:
            return Response(status=204)  # the job is over: EventSource stops reconnecting

        async def job() -> AsyncIterator[ServerSentEvent]:
            for step in range(after + 1, steps + 1):
                await asyncio.sleep(interval)
                data = json.dumps({"step": step, "total": steps})
                yield ServerSentEvent(data, event="progress", id=str(step))
            yield ServerSentEvent(json.dumps({"steps": steps}), event="done", id=str(steps + 1))

        return to_wsgi(sse(job(), heartbeat=5.0, retry=1000, name="job"))

    @app.get("/export/<fmt>")
    def export_rows(fmt: str) -> WSGIStream:
        if fmt not in ("csv", "ndjson", "json"):
            abort(404, f"unknown format {fmt!r}")
        n = int(number("rows", 1_000_000, 5_000_000))
        kind = cast(Literal["csv", "ndjson", "json"], fmt)
        return to_wsgi(export(rows(n), kind, filename=f"export-{n}.{fmt}", name=f"export-{fmt}"))

    @app.get("/file")
    def big_file() -> WSGIStream:
        return to_wsgi(download(big, filename=big.name))  # Range, ETag, HEAD, 304

    @app.post("/upload")
    def upload() -> Response | WSGIApplication:
        received = []
        try:
            with parts(
                request.environ,
                max_size=MAX_SIZE,
                max_part_size=MAX_PART_SIZE,
                max_parts=MAX_PARTS,
                allowed_types=UPLOAD_TYPES,
            ) as stream:
                for part in stream:  # read as they arrive, never buffered whole
                    digest, size = hashlib.sha256(), 0
                    for chunk in part:
                        digest.update(chunk)
                        size += len(chunk)
                    received.append({"field": part.name, "filename": part.filename, "bytes": size})
        except UploadError as exc:  # 413 too large, 415 wrong type, 400 malformed
            return error_response(exc)
        return jsonify({"parts": received})

    return app


if __name__ == "__main__":
    import waitress

    parser = argparse.ArgumentParser(description="streamfx on Flask, served by waitress")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--file-mb", type=int, default=64)
    args = parser.parse_args()
    print(f"serving on http://{args.host}:{args.port}/", flush=True)
    waitress.serve(create_app(args.file_mb), host=args.host, port=args.port, threads=32)
