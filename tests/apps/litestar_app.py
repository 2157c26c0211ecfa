"""The shared routes (tests/_stream_routes.py) behind `to_litestar`, in Litestar.

``litestar_app(tally, root)`` serves every route for GET, HEAD and POST, plus ``POST
/upload`` (through `streamfx.adapters.litestar.parts`). A `StreamfxError` a route
raises (``download()``'s 403/404, ``/busy``'s 503) is answered the Litestar way: the
app's exception handler for it is ``error_response``. ``?write_timeout=`` is passed to
`to_litestar`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response, route
from litestar.handlers import HTTPRouteHandler

from streamfx import StreamfxError, StreamResponse, UploadError
from streamfx.adapters.litestar import (
    StreamingLitestarResponse,
    error_response,
    parts,
    to_litestar,
)
from tests._stream_routes import Route, make_routes, once
from tests.apps.tally import Tally
from tests.apps.uploads import Upload, limits

METHODS: list[Any] = ["GET", "HEAD", "POST"]


def handler(path: str, stream_route: Route) -> HTTPRouteHandler:
    """`stream_route` at `path` (``{name}`` becomes Litestar's ``{name:str}``)."""

    @route(path.replace("{name}", "{name:str}"), http_method=METHODS, name=path)
    async def endpoint(request: Request[Any, Any, Any]) -> StreamingLitestarResponse:
        query = dict(request.query_params)
        response = stream_route(query, request.path_params.get("name", ""))
        return to_litestar(response, write_timeout=float(query.get("write_timeout", "60")))

    return endpoint


def litestar_app(tally: Tally, root: Path) -> Litestar:
    @route("/upload", http_method=["POST"])
    async def upload(request: Request[Any, Any, Any]) -> StreamingLitestarResponse:
        store = Upload(root, tally)
        try:
            async with parts(request, **limits(dict(request.query_params))) as stream:
                result = await store.store_async(stream)
        except UploadError as exc:
            store.refuse(exc)
            return error_response(exc)
        body = once(json.dumps(result).encode())
        return to_litestar(StreamResponse(200, [("content-type", "application/json")], body))

    def on_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        return error_response(exc)

    handlers = [handler(path, r) for path, r in make_routes(tally, root).items()]
    return Litestar(
        [*handlers, upload], exception_handlers={StreamfxError: on_error}, openapi_config=None
    )
