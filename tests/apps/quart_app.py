"""The shared routes (tests/_stream_routes.py) behind `to_quart`, in a Quart app.

A route's `StreamfxError` raised before a response exists (``download()`` refusing a
path) is answered by the app's error handler, `error_response` (the Quart idiom the
README shows); ``?write_timeout=`` is passed to `to_quart`. ``POST /upload`` stores the
parts of `streamfx.adapters.quart.parts` (tests/apps/uploads.py); a refused upload is
answered by the same error handler.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quart import Quart, Response, request

from streamfx import StreamfxError, StreamResponse, UploadError
from streamfx.adapters.quart import error_response, parts, to_quart
from tests._stream_routes import Route, make_routes, once
from tests.apps.tally import Tally
from tests.apps.uploads import Upload, limits


def quart_app(tally: Tally, root: Path) -> Quart:
    app = Quart(__name__)
    app.register_error_handler(StreamfxError, error_response)

    def view(route: Route) -> Callable[..., Any]:
        async def handler(name: str = "") -> Response:
            response = route(request.args, name)
            write_timeout = float(request.args.get("write_timeout", "60"))
            return await to_quart(response, write_timeout=write_timeout)

        return handler

    async def upload() -> Response:
        store = Upload(root, tally)
        try:
            async with parts(request, **limits(request.args)) as stream:
                result = await store.store_async(stream)
        except UploadError as exc:
            store.refuse(exc)
            raise
        except asyncio.CancelledError:  # Quart cancels the view when the client leaves
            store.discard()
            raise
        body = once(json.dumps(result).encode())
        return await to_quart(StreamResponse(200, [("content-type", "application/json")], body))

    for path, route in make_routes(tally, root).items():
        rule = path.replace("{name}", "<name>")
        app.add_url_rule(rule, rule, view(route), methods=["GET", "HEAD"])
    app.add_url_rule("/upload", "upload", upload, methods=["POST"])
    return app
