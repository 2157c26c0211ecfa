"""The shared routes (tests/_stream_routes.py) behind `to_aiohttp`, in an aiohttp app.

``aiohttp_app(tally, root)`` serves every route, plus ``POST /upload`` (through
`parts`). It has the `streamfx_errors` middleware, which answers a route's
`StreamfxError`; ``?write_timeout=`` and ``?disconnect_check=`` are passed to
`to_aiohttp`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from streamfx import UploadError
from streamfx.adapters.aiohttp import parts, streamfx_errors, to_aiohttp
from tests._stream_routes import Route, make_routes
from tests.apps.tally import Tally
from tests.apps.uploads import Upload, limits


def aiohttp_app(tally: Tally, root: Path) -> web.Application:
    def view(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            query = request.query
            response = route(query, request.match_info.get("name", ""))
            names = ("write_timeout", "disconnect_check")
            timing = {name: float(query[name]) for name in names if name in query}
            return await to_aiohttp(request, response, **timing)

        return handler

    async def upload(request: web.Request) -> web.StreamResponse:
        store = Upload(root, tally)
        try:
            async with parts(request, **limits(request.query)) as stream:
                result = await store.store_async(stream)
        except web.HTTPException as exc:
            if isinstance(exc.__cause__, UploadError):
                store.refuse(exc.__cause__)
            raise
        return web.json_response(result)

    app = web.Application(middlewares=[streamfx_errors])
    for path, route in make_routes(tally, root).items():
        app.router.add_get(path, view(route))
    app.router.add_post("/upload", upload)
    return app
