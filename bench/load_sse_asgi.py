"""Load script: a backlog of SSE events to one client, through uvicorn, side by side.

One uvicorn process (uvloop + httptools) serves the same backlog of EVENTS events
(``data: event N``) five ways:

- ``streamfx``: ``to_asgi(sse(source, buffer=BufferPolicy(CAPACITY, "suspend")))``
  (suspend, so the backlog is delivered whole: the default sliding buffer would drop
  events a slower client cannot take);
- ``sse-starlette``: ``EventSourceResponse(source)``;
- ``fastapi``: FastAPI's own ``EventSourceResponse`` (a route that yields);
- ``streaming``: Starlette's ``StreamingResponse``, one chunk per event;
- ``raw-asgi-64``: a bare ASGI app sending 64 pre-encoded events per write.

Every source is the same async generator of strings, with nothing to wait for. The
client is a raw socket in this process that reads until the chunked body ends and
checks it got every event. Each contender runs ROUNDS times, interleaved; the table
shows the median events/s and the ratio to sse-starlette.

Run: ``.venv/bin/pip install -e '.[bench]'`` then ``.venv/bin/python -m bench.load_sse_asgi``
(``--events``, ``--rounds``, ``--capacity`` to change the defaults).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench._uvicorn import fetch_chunked, run_uvicorn, start_server, wait_ready

EVENTS = 100_000
ROUNDS = 5
CAPACITY = 64  # the SSE default capacity (with suspend instead of sliding)
CONTENDERS = ("streamfx", "sse-starlette", "fastapi", "streaming", "raw-asgi-64")


# -- the server ------------------------------------------------------------------------


def build_app(events: int, capacity: int) -> Any:
    from fastapi import FastAPI
    from fastapi.sse import EventSourceResponse as FastAPIEventSourceResponse
    from sse_starlette import EventSourceResponse
    from starlette.responses import StreamingResponse

    from streamfx import BufferPolicy, sse
    from streamfx.adapters.asgi import to_asgi

    async def source() -> AsyncIterator[str]:
        for index in range(events):
            yield f"event {index}"

    async def preformatted() -> AsyncIterator[str]:
        for index in range(events):
            yield f"data: event {index}\n\n"

    async def raw_64(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for start in range(0, events, 64):
            chunk = "".join(
                f"data: event {index}\n\n" for index in range(start, min(start + 64, events))
            ).encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    fastapi_app = FastAPI()

    @fastapi_app.get("/fastapi", response_class=FastAPIEventSourceResponse)
    async def fastapi_events() -> AsyncIterator[str]:
        async for item in source():
            yield item

    policy = BufferPolicy(capacity, "suspend")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/streamfx":
            await to_asgi(sse(source(), buffer=policy))(scope, receive, send)
        elif path == "/sse-starlette":
            await EventSourceResponse(source())(scope, receive, send)
        elif path == "/streaming":
            await StreamingResponse(preformatted(), media_type="text/event-stream")(
                scope, receive, send
            )
        elif path == "/raw-asgi-64":
            await raw_64(scope, receive, send)
        else:
            await fastapi_app(scope, receive, send)

    return app


def serve(fd: int, events: int, capacity: int) -> None:
    run_uvicorn(build_app(events, capacity), fd)


# -- the client ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="SSE backlog load test, side by side")
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--capacity", type=int, default=CAPACITY)
    parser.add_argument("--only", nargs="*", default=list(CONTENDERS))
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(args.serve_fd, args.events, args.capacity)
        return

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = start_server(
        "bench.load_sse_asgi",
        listener,
        "--events",
        str(args.events),
        "--capacity",
        str(args.capacity),
    )
    try:
        wait_ready(port)
        rates: dict[str, list[float]] = {name: [] for name in args.only}
        for name in args.only:  # warm-up, and a check that every event arrives
            _, body = fetch_chunked(port, f"/{name}")
            count = body.count(b"data:")
            if count != args.events:
                raise RuntimeError(f"{name}: {count} events received, {args.events} sent")
        for _ in range(args.rounds):
            for name in args.only:
                seconds, _ = fetch_chunked(port, f"/{name}")
                rates[name].append(args.events / seconds)
    finally:
        server.terminate()
        server.wait(10)
        listener.close()

    if args.json:
        samples = {"events": args.events, "capacity": args.capacity, "events_per_s": rates}
        args.json.write_text(json.dumps(samples))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    base = medians.get("sse-starlette")
    print(
        f"\n{args.events} SSE events, one client, uvicorn (uvloop, httptools), "
        f"median of {args.rounds} rounds; streamfx buffer: suspend {args.capacity}"
    )
    print(f"{'contender':<16}{'events/s':>14}{'x sse-starlette':>18}")
    for name, median in sorted(medians.items(), key=lambda item: -item[1]):
        ratio = f"{median / base:.1f}x" if base else "-"
        print(f"{name:<16}{median:>14,.0f}{ratio:>18}")


if __name__ == "__main__":
    main()
