"""The soak's WSGI app (`to_wsgi`, no framework), served by gunicorn's gthread worker
(`bench.soak.gunicorn_conf` drains open streams on SIGTERM) or by waitress. Routes:
see `bench.soak.server_side`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import parse_qsl
from wsgiref.types import StartResponse, WSGIEnvironment

from bench.soak.server_side import (
    Params,
    background_tasks,
    configure_logging,
    install_hook,
    stats,
    streamfx_export,
    streamfx_sse,
)
from streamfx.adapters.wsgi import to_wsgi

configure_logging()


def _plain(start_response: StartResponse, status: str, body: bytes, kind: str) -> list[bytes]:
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    route = environ.get("PATH_INFO", "")
    if route == "/sse":
        params = Params.parse(query)
        return to_wsgi(streamfx_sse(params), write_timeout=params.write_timeout)(
            environ, start_response
        )
    if route == "/export":
        return to_wsgi(streamfx_export(query))(environ, start_response)
    if route == "/hook":
        install_hook(query.get("mode", "none"))
        return _plain(start_response, "200 OK", b"ok", "text/plain")
    if route == "/ping":
        return _plain(start_response, "200 OK", b"pong", "text/plain")
    if route == "/stats":
        body = json.dumps(stats(background_tasks)).encode()
        return _plain(start_response, "200 OK", body, "application/json")
    return _plain(start_response, "404 Not Found", b"n/a", "text/plain")
