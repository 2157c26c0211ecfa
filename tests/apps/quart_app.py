"""The shared routes (tests/_stream_routes.py) behind `to_quart`, in a Quart app.

A route's `DownloadError` becomes a body that raises it, so `to_quart` answers it with
its status; ``?write_timeout=`` is passed to `to_quart`. No ``/upload``: streamfx has no
upload helper for Quart (Quart reads the request body itself).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from quart import Quart, Response, request

from streamfx import DownloadError
from streamfx.adapters.quart import to_quart
from tests._stream_routes import Route, make_routes, raising
from tests.apps.tally import Tally


def quart_app(tally: Tally, root: Path) -> Quart:
    app = Quart(__name__)

    def view(route: Route) -> Callable[..., Any]:
        async def handler(name: str = "") -> Response:
            try:
                response = route(request.args, name)
            except DownloadError as exc:
                response = raising(exc)
            write_timeout = float(request.args.get("write_timeout", "60"))
            return await to_quart(response, write_timeout=write_timeout)

        return handler

    for path, route in make_routes(tally, root).items():
        rule = path.replace("{name}", "<name>")
        app.add_url_rule(rule, rule, view(route), methods=["GET", "HEAD"])
    return app
