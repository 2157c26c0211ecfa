"""The upload route, the same on every adapter, for tests/test_upload_adapters.py.

Run as ``python -m tests.apps.upload_apps SERVER FD`` (SERVER: ``uvicorn``,
``hypercorn`` or ``aiohttp``; FD: a listening socket it inherits); gunicorn imports
``tests.apps.upload_apps:wsgi_app()``. Each serving process is its own, so that its
memory and its event loop are the server's alone.

Routes:

- ``POST /upload?options=JSON`` or ``POST /upload?row=ID``: the request body through
  the adapter's upload helper (``parts`` in each adapter module),
  with the JSON object's items as keyword arguments, or with those of the row `ID` of
  the attack table (tests/_upload_rows.py: its ``LIMITS`` and the row's ``options``,
  the sniff hook included). Every file part is saved with ``part.save(directory)``
  into a directory of the request's own under ``$STREAMFX_UPLOAD_STORE``, every field
  read; on an `UploadError` the error is answered the adapter's way
  (``error_response``, or the HTTP error aiohttp's helper raises). Whatever the outcome
  the saved files are removed, then the directory, which stays if anything else was
  left in it (a half-written file). On success the answer is JSON: ``count`` (parts),
  ``parts`` (the first `LISTED` parts as ``[name, filename, size]``) and ``files``
  (the names the saved files were given).
- ``GET /rss``: JSON: ``rss``, the serving process's peak resident memory so far in
  KiB, and ``stall``, the longest CPU time (of the event loop's thread) the loop went
  without a turn since the last call (0 under gunicorn: no loop there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIEnvironment

from streamfx import UploadError
from streamfx._upload.multipart import PartStream
from streamfx.adapters.wsgi import WSGIParts

LISTED = 100


def options(query_string: str) -> dict[str, Any]:
    query = parse_qs(query_string)
    if "row" in query:
        from tests._upload_rows import LIMITS, ROWS

        row = next(row for row in ROWS if row.id == query["row"][0])
        return {**LIMITS, **row.options}
    loaded: dict[str, Any] = json.loads(query["options"][0]) if "options" in query else {}
    return loaded


class Ticker:
    """Records the longest stretch of CPU time the event loop's thread spent between two
    turns of a task that asks for one every 2 ms."""

    longest = 0.0
    task: asyncio.Task[None] | None = None

    @classmethod
    def report(cls) -> float:
        """The longest stretch since the last report (and start ticking, the first
        time, in the running loop)."""
        if cls.task is None:
            cls.task = asyncio.get_running_loop().create_task(cls._run())
        longest, cls.longest = cls.longest, 0.0
        return longest

    @classmethod
    async def _run(cls) -> None:
        last = time.thread_time()
        while True:
            await asyncio.sleep(0.002)
            now = time.thread_time()
            cls.longest = max(cls.longest, now - last)
            last = now


def report(stall: float) -> bytes:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return json.dumps({"rss": peak, "stall": stall}).encode()


class Store:
    """The files of one request, in a directory of their own: what the route saved is
    removed whatever happens, and then the directory, which fails (leaving it for the
    test to see) if anything else was left in it."""

    def __init__(self) -> None:
        self.directory = Path(os.environ["STREAMFX_UPLOAD_STORE"]) / uuid.uuid4().hex
        self.directory.mkdir()
        self.saved: list[Path] = []
        self.count = 0
        self.listed: list[tuple[str, str | None, int]] = []

    def add(self, name: str, filename: str | None, size: int) -> None:
        self.count += 1
        if len(self.listed) < LISTED:
            self.listed.append((name, filename, size))

    def file(self, name: str, filename: str | None, path: Path) -> None:
        self.saved.append(path)
        self.add(name, filename, path.stat().st_size)

    async def keep(self, stream: PartStream) -> None:
        """Read every part of `stream`: fields counted, files saved (``Part.save``)."""
        async for part in stream:
            if part.filename is None:
                self.add(part.name, None, len(await part.read()))
            else:
                self.file(part.name, part.filename, await part.save(self.directory))

    def keep_wsgi(self, parts: WSGIParts) -> None:
        """`keep` for the WSGI helper's parts (``WSGIPart.save``)."""
        for part in parts:
            if part.filename is None:
                self.add(part.name, None, len(part.read()))
            else:
                self.file(part.name, part.filename, part.save(self.directory))

    def answer(self) -> bytes:
        files = [path.name for path in self.saved]
        return json.dumps({"count": self.count, "parts": self.listed, "files": files}).encode()

    def close(self) -> None:
        for path in self.saved:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.directory.rmdir()


@contextlib.contextmanager
def storing() -> Iterator[Store]:
    store = Store()
    try:
        yield store
    finally:
        store.close()


# -- ASGI (Starlette) ----------------------------------------------------------------


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from streamfx.adapters.asgi import error_response, parts

    async def upload(request: Request) -> Any:
        with storing() as store:
            try:
                async with parts(request, **options(request.url.query)) as stream:
                    await store.keep(stream)
            except UploadError as exc:
                return error_response(exc)
            return Response(store.answer(), media_type="application/json")

    async def rss(request: Request) -> Response:
        return Response(report(Ticker.report()), media_type="application/json")

    return Starlette(routes=[Route("/upload", upload, methods=["POST"]), Route("/rss", rss)])


# -- aiohttp -------------------------------------------------------------------------


def aiohttp_app() -> Any:
    from aiohttp import web

    from streamfx.adapters.aiohttp import parts

    async def upload(request: web.Request) -> web.StreamResponse:
        with storing() as store:
            async with parts(request, **options(request.query_string)) as stream:
                await store.keep(stream)
            return web.Response(body=store.answer(), content_type="application/json")

    async def rss(request: web.Request) -> web.Response:
        return web.Response(body=report(Ticker.report()), content_type="application/json")

    app = web.Application()
    app.router.add_post("/upload", upload)
    app.router.add_get("/rss", rss)
    return app


# -- WSGI ----------------------------------------------------------------------------


def wsgi_app() -> Any:
    from streamfx.adapters.wsgi import error_response, parts

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/rss":
            return answer(start_response, report(0.0))
        with storing() as store:
            try:
                with parts(environ, **options(environ.get("QUERY_STRING", ""))) as it:
                    store.keep_wsgi(it)
            except UploadError as exc:
                return error_response(exc)(environ, start_response)
            return answer(start_response, store.answer())

    return app


def answer(start_response: StartResponse, body: bytes) -> list[bytes]:
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]


# -- the servers ---------------------------------------------------------------------


def serve(server: str, fd: int) -> None:
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(starlette_app(), fd=fd, lifespan="off", log_level="warning")
    elif server == "hypercorn":
        from hypercorn.asyncio import serve as hypercorn_serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"fd://{fd}"]
        config.accesslog = None
        asyncio.run(hypercorn_serve(starlette_app(), config))
    else:
        from aiohttp import web

        async def run() -> None:
            # A short lingering read after an answer that did not read the whole body
            # (aiohttp's default is 10 s), so that the tests wait less for the close.
            runner = web.AppRunner(aiohttp_app(), access_log=None, lingering_time=2.0)
            await runner.setup()
            await web.SockSite(runner, socket.socket(fileno=fd)).start()
            await asyncio.Event().wait()

        asyncio.run(run())


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
