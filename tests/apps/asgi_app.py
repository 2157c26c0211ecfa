"""The shared routes (tests/_stream_routes.py) behind `to_asgi`, in Starlette and FastAPI.

``starlette_app(tally, root)`` and ``fastapi_app(tally, root)`` serve every route, plus
``POST /upload`` (through `streamfx.adapters.asgi.parts`) and, for a server in another
process, ``/_tasks`` (streamfx tasks still running), ``/_drain`` and ``/_undrain``
(`request_shutdown` / `reset_shutdown`). A route's `StreamfxError` is answered with
``error_response``; ``?write_timeout=`` is passed to `to_asgi`.

``app_from_env()`` builds the Starlette app for a server in another process (granian):
the tally is the file ``$STREAMFX_TEST_DIR/tally.bin`` and the metrics hook counts
into it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute

from streamfx import StreamfxError, StreamResponse, UploadError, request_shutdown, reset_shutdown
from streamfx.adapters.asgi import error_response, parts, to_asgi
from streamfx.metrics import set_metrics
from tests._stream_routes import Route, make_routes, once
from tests.apps.tally import Tally, TallyMetrics
from tests.apps.uploads import Upload, limits

Handler = Callable[[Request], Awaitable[Any]]


def running_tasks() -> int:
    """Tasks of streamfx's still running on this loop."""
    return sum(
        1
        for task in asyncio.all_tasks()
        if task.get_name().startswith("streamfx") and not task.done()
    )


def handlers(tally: Tally, root: Path) -> dict[str, Handler]:
    """Every path and its endpoint, returning what `to_asgi` returns."""

    def lift(route: Route) -> Handler:
        async def endpoint(request: Request) -> Any:
            query = request.query_params
            try:
                response = route(query, request.path_params.get("name", ""))
            except StreamfxError as exc:
                return error_response(exc)
            return to_asgi(response, write_timeout=float(query.get("write_timeout", "60")))

        return endpoint

    async def upload(request: Request) -> Any:
        store = Upload(root, tally)
        try:
            async with parts(request, **limits(request.query_params)) as stream:
                result = await store.store_async(stream)
        except UploadError as exc:
            store.refuse(exc)
            return error_response(exc)
        body = once(json.dumps(result).encode())
        return to_asgi(StreamResponse(200, [("content-type", "application/json")], body))

    async def tasks(request: Request) -> Response:
        return JSONResponse({"tasks": running_tasks()})

    async def drain(request: Request) -> Response:
        request_shutdown()
        return JSONResponse({})

    async def undrain(request: Request) -> Response:
        reset_shutdown()
        return JSONResponse({})

    routes = {path: lift(route) for path, route in make_routes(tally, root).items()}
    return {**routes, "/upload": upload, "/_tasks": tasks, "/_drain": drain, "/_undrain": undrain}


def starlette_app(tally: Tally, root: Path) -> Starlette:
    def checked(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            app = await handler(request)
            assert isinstance(app, Response)  # Starlette sends it as its own
            app.headers["x-via"] = "starlette"  # headers added here are sent too
            return app

        return endpoint

    return Starlette(
        routes=[
            StarletteRoute(path, checked(handler), methods=["GET", "HEAD", "POST"])
            for path, handler in handlers(tally, root).items()
        ]
    )


def fastapi_app(tally: Tally, root: Path) -> FastAPI:
    app = FastAPI()
    for path, handler in handlers(tally, root).items():
        app.add_api_route(path, handler, methods=["GET", "HEAD", "POST"])
    return app


def app_from_env() -> Starlette:
    """The Starlette app over the tally file in ``$STREAMFX_TEST_DIR`` (granian --factory)."""
    root = Path(os.environ["STREAMFX_TEST_DIR"])
    tally = Tally.mapped(root / "tally.bin")
    set_metrics(TallyMetrics(tally))
    return starlette_app(tally, root)
