"""SSE backlog throughput on aiohttp: `to_aiohttp(sse(...))` against aiohttp-sse and a
plain aiohttp ``StreamResponse`` writing one chunk per event, in one run.

A backlog of `--events` text events (``message number N from alice``), all ready at
once, goes to one client per request. The server is a child process (default asyncio
loop) with three routes:

- ``/aiohttp-sse``: ``aiohttp_sse.sse_response`` and ``await response.send(text)`` per
  event, the library aiohttp users reach for;
- ``/aiohttp-raw``: a ``web.StreamResponse`` and one ``write(f"data: ...\\n\\n")`` per
  event, the hand-written recipe;
- ``/streamfx``: ``to_aiohttp(request, sse(events, heartbeat=None,
  buffer=BufferPolicy(64, "suspend")))``: the default SSE buffer size, in suspend mode
  so that no event is dropped and every route does the same job.

The client is a blocking socket speaking HTTP/1.0 (the body ends when the connection
closes); it checks that every event arrived. Rounds alternate the order of the
routes; printed: median events/s per route and the median of the per-round ratios.

    python bench/load_sse_aiohttp.py [--events 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

ROUTES = ("/aiohttp-sse", "/aiohttp-raw", "/streamfx")


def serve(events: int) -> None:
    """Run the server until stdin closes; print the port on stdout first."""
    from aiohttp import web
    from aiohttp_sse import sse_response

    from streamfx import BufferPolicy, sse
    from streamfx.adapters.aiohttp import to_aiohttp

    async def backlog() -> AsyncIterator[str]:
        for number in range(events):
            yield f"message number {number} from alice"

    async def with_aiohttp_sse(request: web.Request) -> web.StreamResponse:
        async with sse_response(request) as response:
            async for text in backlog():
                await response.send(text)
        return response

    async def raw(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for text in backlog():
            await response.write(f"data: {text}\n\n".encode())
        await response.write_eof()
        return response

    async def with_streamfx(request: web.Request) -> web.StreamResponse:
        body = sse(backlog(), heartbeat=None, buffer=BufferPolicy(64, "suspend"))
        return await to_aiohttp(request, body)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/aiohttp-sse", with_aiohttp_sse)
        app.router.add_get("/aiohttp-raw", raw)
        app.router.add_get("/streamfx", with_streamfx)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


def fetch(port: int, route: str, events: int) -> float:
    """GET `route` over HTTP/1.0; return the seconds until the last byte arrived."""
    parts: list[bytes] = []
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {route} HTTP/1.0\r\n\r\n".encode())
        while received := sock.recv(1 << 20):
            parts.append(received)
    elapsed = time.perf_counter() - started
    data = b"".join(parts)
    if not data.startswith(b"HTTP/1.0 200") or data.count(b"data: message") != events:
        raise RuntimeError(f"{route}: {data.count(b'data: message')} of {events} events")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    if args.serve:
        serve(args.events)
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--events", str(args.events)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        port = int(server.stdout.readline())
        for route in ROUTES:  # warm up
            fetch(port, route, args.events)
        rates: dict[str, list[float]] = {route: [] for route in ROUTES}
        for round_number in range(args.rounds):
            order = ROUTES if round_number % 2 == 0 else tuple(reversed(ROUTES))
            for route in order:
                rates[route].append(args.events / fetch(port, route, args.events))
    finally:
        server.stdin.close()
        server.wait(timeout=10)
        server.stdout.close()
    if args.json:
        args.json.write_text(json.dumps({"events": args.events, "events_per_s": rates}))
    print(f"{args.events} events backlog, {args.rounds} rounds: median events/s, and the")
    print("median of the per-round ratios to /aiohttp-sse:")
    for route in ROUTES:
        paired = statistics.median(
            mine / peer for mine, peer in zip(rates[route], rates["/aiohttp-sse"], strict=True)
        )
        print(f"  {route:14s} {statistics.median(rates[route]):10.0f} events/s  {paired:6.2f}x")


if __name__ == "__main__":
    main()
