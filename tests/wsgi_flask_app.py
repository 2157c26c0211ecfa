"""The Flask app that tests/test_adapter_wsgi.py serves with waitress and gunicorn.

It reports what happened on the server side through files in one directory, because
gunicorn runs it in another process:

- ``events.log``: ``open TOKEN`` when a stream's source starts, ``close TOKEN`` when
  its ``finally`` ran (one line each, appended);
- ``TOKEN.produced``: one byte per item the source produced;
- ``TOKEN.done``: the source produced every item it was asked for;
- ``TOKEN.closed``: written by the metrics hook when the stream closed:
  ``dropped=N outcome=...``;
- ``uploads/``: the files of uploads, removed again when an upload is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from flask import Flask, request

from streamfx import (
    BufferPolicy,
    DownloadError,
    FileRange,
    StreamResponse,
    UploadError,
    download,
    export,
    sse,
)
from streamfx.adapters.wsgi import (
    WSGIStream,
    background_loop,
    error_response,
    parts_from_wsgi,
    to_wsgi,
)
from streamfx.metrics import InMemoryMetrics, Outcome, get_metrics, set_metrics


class FileReportingMetrics(InMemoryMetrics):
    """Records in memory, and writes ``NAME.closed`` when a named stream closes."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        super().stream_closed(kind, name, duration, outcome)
        if name:
            dropped = self.dropped[kind, name]
            # Written whole, then renamed: a reader never sees a half-written report.
            report = self.directory / f"{name}.closed"
            draft = report.with_suffix(".draft")
            draft.write_text(f"dropped={dropped} outcome={outcome}")
            draft.replace(report)


class BadRequestError(Exception):
    status = 403


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def create_app(log_dir: str | None = None) -> Flask:
    """The app; `log_dir` defaults to ``$STREAMFX_TEST_DIR``. With
    ``$STREAMFX_TEST_METRICS`` set, installs the file-reporting metrics hook, and with
    ``$STREAMFX_TEST_WARM`` set, starts the background loop at once (in gunicorn's
    master with ``--preload``, to check that forked workers start their own)."""
    directory = Path(log_dir if log_dir is not None else os.environ["STREAMFX_TEST_DIR"])
    if os.environ.get("STREAMFX_TEST_METRICS"):
        set_metrics(FileReportingMetrics(directory))
    if os.environ.get("STREAMFX_TEST_WARM"):
        background_loop()
    log = directory / "events.log"
    uploads = directory / "uploads"
    uploads.mkdir(exist_ok=True)
    files = directory / "files"
    files.mkdir(exist_ok=True)
    app = Flask(__name__)
    app.register_error_handler(DownloadError, error_response)

    async def tracked(token: str, source: AsyncIterator[str]) -> AsyncIterator[str]:
        _append(log, f"open {token}\n".encode())
        try:
            async for item in source:
                yield item
        finally:
            _append(log, f"close {token}\n".encode())

    async def events(
        token: str, count: int, size: int, interval: float, hold: bool
    ) -> AsyncIterator[str]:
        produced = directory / f"{token}.produced"
        for index in range(count):
            yield f"{index:08d} " + "x" * max(size - 9, 0)
            _append(produced, b".")
            if interval:
                await asyncio.sleep(interval)
        (directory / f"{token}.done").touch()
        if hold:
            await asyncio.Event().wait()

    @app.get("/sse")
    def sse_view() -> WSGIStream:
        args = request.args
        token = args["token"]
        source = events(
            token,
            int(args.get("events", "3")),
            int(args.get("size", "16")),
            float(args.get("interval", "0")),
            args.get("hold") == "1",
        )
        heartbeat = float(args["heartbeat"]) if "heartbeat" in args else None
        policy = None
        if "capacity" in args:
            policy = BufferPolicy(int(args["capacity"]), args.get("strategy", "suspend"))  # type: ignore[arg-type]
        return to_wsgi(sse(tracked(token, source), heartbeat=heartbeat, buffer=policy, name=token))

    @app.get("/fail")
    def fail_view() -> WSGIStream:
        mode = request.args["mode"]
        length = request.args.get("length")

        async def body() -> AsyncIterator[bytes]:
            if mode == "before":
                raise RuntimeError("secret internal detail")
            if mode == "status":
                raise BadRequestError("not allowed here")
            for index in range(3):
                yield f"chunk {index}\n".encode()
                await asyncio.sleep(0.01)
            raise RuntimeError("the source broke")

        headers = [("content-type", "text/plain")]
        if length is not None:
            headers.append(("content-length", length))
        return to_wsgi(StreamResponse(200, headers, body()))

    @app.get("/file")
    def file_view() -> WSGIStream:
        path = directory / "data.bin"
        offset = int(request.args.get("offset", "0"))
        length = int(request.args.get("length", str(path.stat().st_size - offset)))

        async def body() -> AsyncIterator[bytes]:
            (directory / "file-body-iterated").touch()
            with path.open("rb") as file:
                file.seek(offset)
                yield file.read(length)

        headers = [("content-type", "application/octet-stream"), ("content-length", str(length))]
        return to_wsgi(StreamResponse(200, headers, body(), FileRange(path, offset, length)))

    @app.get("/download/<name>")
    def download_view(name: str) -> WSGIStream:
        return to_wsgi(download(name, root=files))

    @app.get("/export/<kind>")
    def export_view(kind: str) -> WSGIStream:
        rows = int(request.args.get("rows", "3"))
        fail_at = int(request.args.get("fail_at", "-1"))

        async def source() -> AsyncIterator[dict[str, Any]]:
            for index in range(rows):
                if index == fail_at:
                    raise RuntimeError("the database went away")
                yield {"id": index, "name": f"row {index}", "formula": "=1+1"}

        return to_wsgi(export(source(), kind, filename=f"rows.{kind}"))

    @app.post("/upload")
    def upload_view() -> dict[str, Any] | WSGIApplication:
        args = request.args
        allowed = args["allowed"].split(",") if "allowed" in args else None
        saved: list[Path] = []
        fields: dict[str, str] = {}
        stored: dict[str, list[object]] = {}
        try:
            with parts_from_wsgi(
                request.environ,
                max_size=int(args.get("max_size", "10000000")),
                max_part_size=int(args.get("max_part_size", "10000000")),
                max_parts=int(args.get("max_parts", "10")),
                allowed_types=allowed,
            ) as parts:
                for part in parts:
                    if part.filename is None:
                        fields[part.name] = part.read().decode()
                        continue
                    target = uploads / f"{uuid.uuid4().hex}.part"
                    saved.append(target)
                    digest = hashlib.sha256()
                    size = 0
                    with target.open("wb") as out:
                        for chunk in part:
                            out.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                    stored[part.name] = [part.filename, size, digest.hexdigest()]
        except UploadError as exc:
            for path in saved:
                path.unlink(missing_ok=True)
            return error_response(exc)
        return {"fields": fields, "files": stored}

    flask_app = app.wsgi_app

    def raw_routes(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """``/raw/download/NAME`` bypasses Flask: the server gets `to_wsgi`'s own
        iterable, so a file range goes to ``wsgi.file_wrapper`` unwrapped (sendfile)."""
        path: str = environ.get("PATH_INFO", "")
        if path.startswith("/raw/download/"):
            response = download(path.removeprefix("/raw/download/"), root=files)
            return to_wsgi(response)(environ, start_response)
        return flask_app(environ, start_response)

    app.wsgi_app = raw_routes  # type: ignore[method-assign]

    @app.get("/tasks")
    def tasks_view() -> dict[str, int]:
        loop = background_loop()

        async def count() -> int:
            current = asyncio.current_task()
            return sum(1 for task in asyncio.all_tasks() if task is not current)

        pending = asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=5)
        hook = get_metrics()
        opened = hook.opened if isinstance(hook, InMemoryMetrics) else {}
        downloads = sum(n for (kind, _), n in opened.items() if kind == "download")
        return {"tasks": pending, "pid": os.getpid(), "download_bodies_started": downloads}

    return app
