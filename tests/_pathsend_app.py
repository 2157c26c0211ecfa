"""A Starlette app for the granian (``http.response.pathsend``) test, run in a subprocess.

``/files/{name}`` downloads from the directory in ``STREAMFX_TEST_ROOT``; ``/stats``
reports how many download bodies were iterated (a body sent by path never is).
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamfx import download
from streamfx.adapters.asgi import to_asgi
from streamfx.metrics import InMemoryMetrics, set_metrics

metrics = InMemoryMetrics()
set_metrics(metrics)
ROOT = Path(os.environ.get("STREAMFX_TEST_ROOT", "."))


async def files(request: Request) -> Response:
    app = to_asgi(download(request.path_params["name"], root=ROOT))
    assert isinstance(app, Response)
    return app


async def stats(request: Request) -> Response:
    return JSONResponse(
        {
            "opened": metrics.opened[("download", "")],
            "closed": sum(
                count for (kind, _, _), count in metrics.outcomes.items() if kind == "download"
            ),
        }
    )


app = Starlette(routes=[Route("/files/{name}", files), Route("/stats", stats)])
