"""The Flask app that tests/test_adapter_wsgi.py serves with waitress and gunicorn.

It reports what happened on the server side through files in one directory, because
gunicorn runs it in another process:

- ``events.log``: ``open TOKEN`` when a stream's source starts, ``close TOKEN`` when
  its ``finally`` ran (one line each, appended);
- ``TOKEN.produced``: one byte per item the source produced;
- ``TOKEN.done``: the source produced every item it was asked for;
- ``TOKEN.closed``: written by the metrics hook when the stream closed:
  ``dropped=N outcome=...``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from flask import Flask, request

from streamfx import BufferPolicy, FileRange, StreamResponse, sse
from streamfx.adapters.wsgi import WSGIStream, background_loop, to_wsgi
from streamfx.metrics import InMemoryMetrics, Outcome, set_metrics


class FileReportingMetrics(InMemoryMetrics):
    """Records in memory, and writes ``NAME.closed`` when a named stream closes."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        super().stream_closed(kind, name, duration, outcome)
        if name:
            dropped = self.dropped[kind, name]
            (self.directory / f"{name}.closed").write_text(f"dropped={dropped} outcome={outcome}")


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
    app = Flask(__name__)

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

    @app.get("/tasks")
    def tasks_view() -> dict[str, int]:
        loop = background_loop()

        async def count() -> int:
            current = asyncio.current_task()
            return sum(1 for task in asyncio.all_tasks() if task is not current)

        pending = asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=5)
        return {"tasks": pending, "pid": os.getpid()}

    return app
