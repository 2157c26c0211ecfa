"""The upload route, the same on every adapter, for tests/test_upload_adapters.py.

Run as ``python -m tests.apps.upload_apps SITE FD`` (FD: a listening socket it
inherits; SITE: ``uvicorn`` and ``hypercorn``, the Starlette app; ``fastapi``, the FastAPI
app under uvicorn; ``aiohttp``; ``waitress``, the Flask app); gunicorn imports
``tests.apps.upload_apps:flask_app()``. Each serving process is its own, so that its
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
  KiB, and ``stall``, the longest the event loop went without a turn since the last
  call, in CPU seconds: of the loop's own thread under the ASGI servers and aiohttp
  (the upload is parsed on that loop), and of the whole process for the WSGI servers,
  where the upload is parsed in the request's thread and the loop is the process's
  background loop (`streamfx.adapters.wsgi._loop`, which serves the WSGI adapter's
  async bodies): a request thread that kept the GIL would show there. CPU time, not
  the wall clock: time the machine gives to other processes is nobody's stall.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request as FastAPIRequest  # at module level: FastAPI reads the annotation

from streamfx import UploadError
from streamfx._upload.stream import PartStream
from streamfx.adapters.wsgi import WSGIParts
from tests._upload_rows import LIMITS, ROWS  # here, not in the first request's turn

LISTED = 100
WAITRESS_MAX_BODY = 100 << 20


def options(query_string: str) -> dict[str, Any]:
    query = parse_qs(query_string)
    if "row" in query:
        row = next(row for row in ROWS if row.id == query["row"][0])
        return {**LIMITS, **row.options}
    loaded: dict[str, Any] = json.loads(query["options"][0]) if "options" in query else {}
    return loaded


class Ticker:
    """Records the longest stretch of `clock` time between two turns of a task that asks
    the event loop for one every 2 ms."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.longest = 0.0
        self.started = False

    def report(self, loop: asyncio.AbstractEventLoop | None = None) -> float:
        """The longest stretch since the last report; the first call starts ticking in
        `loop` (from another thread) or else in the running loop."""
        if not self.started:
            self.started = True
            if loop is None:
                asyncio.get_running_loop().create_task(self._run())
            else:
                asyncio.run_coroutine_threadsafe(self._run(), loop)
        longest, self.longest = self.longest, 0.0
        return longest

    async def _run(self) -> None:
        clock = self.clock
        last = clock()
        while True:
            await asyncio.sleep(0.002)
            now = clock()
            self.longest = max(self.longest, now - last)
            last = now


LOOP_TICKER = Ticker(time.thread_time)
"""The ASGI servers' and aiohttp's loop, in CPU time of its thread."""

WSGI_TICKER = Ticker(time.process_time)
"""The WSGI background loop, in CPU time of the whole process."""


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


# -- ASGI (Starlette, FastAPI) ------------------------------------------------------


async def asgi_upload(request: Any) -> Any:
    """The upload route for a Starlette or FastAPI ``Request``."""
    from starlette.responses import Response

    from streamfx.adapters.asgi import error_response, parts

    with storing() as store:
        try:
            async with parts(request, **options(request.url.query)) as stream:
                await store.keep(stream)
        except UploadError as exc:
            return error_response(exc)
        return Response(store.answer(), media_type="application/json")


def asgi_rss() -> Any:
    from starlette.responses import Response

    return Response(report(LOOP_TICKER.report()), media_type="application/json")


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    async def upload(request: Request) -> Any:
        return await asgi_upload(request)

    async def rss(request: Request) -> Any:
        return asgi_rss()

    return Starlette(routes=[Route("/upload", upload, methods=["POST"]), Route("/rss", rss)])


def fastapi_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/upload")
    async def upload(request: FastAPIRequest) -> Any:
        return await asgi_upload(request)

    @app.get("/rss")
    async def rss() -> Any:
        return asgi_rss()

    return app


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
        return web.Response(body=report(LOOP_TICKER.report()), content_type="application/json")

    app = web.Application()
    app.router.add_post("/upload", upload)
    app.router.add_get("/rss", rss)
    return app


# -- WSGI (Flask) --------------------------------------------------------------------


def flask_app() -> Any:
    from flask import Flask, Response, request

    from streamfx.adapters.wsgi import error_response, parts
    from streamfx.adapters.wsgi._loop import background_loop

    app = Flask(__name__)

    @app.post("/upload")
    def upload() -> Any:
        query = request.query_string.decode()
        with storing() as store:
            try:
                with parts(request.environ, **options(query)) as it:
                    store.keep_wsgi(it)
            except UploadError as exc:
                return error_response(exc)
            return Response(store.answer(), content_type="application/json")

    @app.get("/rss")
    def rss() -> Any:
        stall = WSGI_TICKER.report(background_loop())
        return Response(report(stall), content_type="application/json")

    return app


# -- the servers ---------------------------------------------------------------------


def serve(server: str, fd: int) -> None:
    if server in ("uvicorn", "fastapi"):
        import uvicorn

        app = starlette_app() if server == "uvicorn" else fastapi_app()
        uvicorn.run(app, fd=fd, lifespan="off", log_level="warning")
    elif server == "waitress":
        import waitress

        # A body larger than every row's (the largest is 50 MiB) and smaller than the
        # 1 GiB a test declares: that one waitress refuses itself, before the app.
        waitress.serve(
            flask_app(),
            sockets=[socket.socket(fileno=fd)],
            max_request_body_size=WAITRESS_MAX_BODY,
            _quiet=True,
        )
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
