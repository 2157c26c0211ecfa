"""The Flask app that bench/test_bench_wsgi.py serves with gunicorn: each job twice,
through `streamfx.adapters.wsgi.to_wsgi` and as the usual Flask recipe (a generator
that yields one chunk per event or row)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from flask import Flask, Response, request

from streamfx import BufferPolicy, StreamResponse, export, sse
from streamfx.adapters.wsgi import WSGIStream, to_wsgi


def create_app() -> Flask:
    app = Flask(__name__)

    async def numbers(count: int) -> AsyncIterator[str]:
        for index in range(count):
            yield str(index)

    async def rows(count: int) -> AsyncIterator[dict[str, Any]]:
        for index in range(count):
            yield {"id": index, "name": f"row {index}", "score": index * 0.5}

    @app.get("/streamfx/sse")
    def streamfx_sse() -> WSGIStream:
        count = int(request.args["n"])
        policy = BufferPolicy(1024, "suspend")  # a backlog: nothing may be dropped
        return to_wsgi(sse(numbers(count), heartbeat=None, buffer=policy))

    @app.get("/flask/sse")
    def flask_sse() -> Response:
        count = int(request.args["n"])

        def events() -> Iterator[str]:
            for index in range(count):
                yield f"data: {index}\n\n"

        return Response(events(), mimetype="text/event-stream")

    @app.get("/streamfx-unbatched/sse")
    def streamfx_unbatched_sse() -> WSGIStream:
        count = int(request.args["n"])

        async def events() -> AsyncIterator[bytes]:
            for index in range(count):
                yield f"data: {index}\n\n".encode()

        headers = [("content-type", "text/event-stream")]
        return to_wsgi(StreamResponse(200, headers, events()))

    @app.get("/streamfx/ndjson")
    def streamfx_ndjson() -> WSGIStream:
        return to_wsgi(export(rows(int(request.args["n"])), "ndjson"))

    @app.get("/flask/ndjson")
    def flask_ndjson() -> Response:
        count = int(request.args["n"])

        def lines() -> Iterator[str]:
            for index in range(count):
                row = {"id": index, "name": f"row {index}", "score": index * 0.5}
                yield json.dumps(row) + "\n"

        return Response(lines(), mimetype="application/x-ndjson")

    return app
