"""The shared routes (tests/_stream_routes.py) behind `to_wsgi`, in a Flask app.

``create_app(tally, root)`` serves every route, plus ``POST /upload`` (through
`parts`), ``/_tasks`` (tasks still running on the background loop),
``/_drain`` and ``/_undrain``; a route's `StreamfxError` (``download()`` refusing a
path) is answered by Flask's error handler, ``error_response``; ``?write_timeout=`` is
passed to `to_wsgi`. WSGI-only routes:

- ``/file?offset=&length=``: a `FileRange` of ``ROOT/data.bin`` whose body, if it is
  ever iterated, counts ``tally.started``;
- ``/raw/download/NAME``: a download that bypasses Flask, so the server gets
  `to_wsgi`'s own iterable (a file range goes to ``wsgi.file_wrapper`` unwrapped).

``app_from_env()`` is the app for gunicorn (another process): the tally is the file
``$STREAMFX_TEST_DIR/tally.bin`` and the metrics hook counts into it; with
``$STREAMFX_TEST_WARM`` set, the background loop starts at once (in gunicorn's master
with ``--preload``, so that the forked worker must start its own).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from flask import Flask, request

from streamfx import (
    FileRange,
    StreamfxError,
    StreamResponse,
    UploadError,
    download,
    request_shutdown,
    reset_shutdown,
)
from streamfx.adapters.wsgi import (
    WSGIStream,
    background_loop,
    error_response,
    parts,
    to_wsgi,
)
from streamfx.metrics import set_metrics
from tests._stream_routes import Route, make_routes
from tests.apps.tally import Tally, TallyMetrics
from tests.apps.uploads import Upload, limits


def loop_tasks() -> int:
    """Tasks running on the background loop (other than the one counting)."""

    async def count() -> int:
        current = asyncio.current_task()
        return sum(1 for task in asyncio.all_tasks() if task is not current)

    return asyncio.run_coroutine_threadsafe(count(), background_loop()).result(timeout=5)


def create_app(tally: Tally, root: Path) -> Flask:
    app = Flask(__name__)
    app.register_error_handler(StreamfxError, error_response)

    def view(route: Route) -> Callable[..., WSGIStream]:
        def handler(name: str = "") -> WSGIStream:
            write_timeout = float(request.args.get("write_timeout", "60"))
            return to_wsgi(route(request.args, name), write_timeout=write_timeout)

        return handler

    for path, route in make_routes(tally, root).items():
        rule = path.replace("{name}", "<name>")
        app.add_url_rule(rule, rule, view(route))

    @app.post("/upload")
    def upload() -> dict[str, Any] | WSGIApplication:
        store = Upload(root, tally)
        try:
            with parts(request.environ, **limits(request.args)) as stream:
                return store.store(stream)
        except UploadError as exc:
            store.refuse(exc)
            return error_response(exc)

    @app.get("/file")
    def file_view() -> WSGIStream:
        path = root / "data.bin"
        offset = int(request.args.get("offset", "0"))
        length = int(request.args.get("length", str(path.stat().st_size - offset)))

        async def body() -> AsyncIterator[bytes]:
            tally.started += 1
            yield path.read_bytes()[offset : offset + length]

        headers = [("content-type", "application/octet-stream"), ("content-length", str(length))]
        return to_wsgi(StreamResponse(200, headers, body(), FileRange(path, offset, length)))

    @app.get("/_tasks")
    def tasks() -> dict[str, int]:
        return {"tasks": loop_tasks()}

    @app.get("/_drain")
    def drain() -> dict[str, int]:
        request_shutdown()
        return {}

    @app.get("/_undrain")
    def undrain() -> dict[str, int]:
        reset_shutdown()
        return {}

    flask_app = app.wsgi_app

    def raw_routes(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith("/raw/download/"):
            response = download(path.removeprefix("/raw/download/"), root=root / "files")
            return to_wsgi(response)(environ, start_response)
        return flask_app(environ, start_response)

    app.wsgi_app = raw_routes  # type: ignore[method-assign]
    return app


def app_from_env() -> Flask:
    """The app over the tally file in ``$STREAMFX_TEST_DIR`` (for gunicorn)."""
    root = Path(os.environ["STREAMFX_TEST_DIR"])
    tally = Tally.mapped(root / "tally.bin")
    set_metrics(TallyMetrics(tally))
    if os.environ.get("STREAMFX_TEST_WARM"):
        background_loop()
    return create_app(tally, root)
