"""Single-event latency on an idle SSE stream served by aiohttp: publish to client.

The server (a child process, default asyncio loop) keeps one in-memory subscriber
queue per open stream. ``POST /publish/<route>`` puts one item in the queues of that
route's streams and answers 204. The client holds one SSE connection per route open,
and for each sample sends a publish request, then reads its SSE socket until the
event arrives: the time between is the latency (it includes the publish request's
trip, the same for every route; ``/baseline`` publishes to no one, to show that part).

Routes, served the same queue-fed source:

- ``/aiohttp-sse``: aiohttp-sse's ``sse_response`` and ``send`` per event;
- ``/streamfx``: ``to_aiohttp(request, sse(source(), heartbeat=None))`` (default
  sliding buffer of 64: an idle stream must send a lone event at once).

Printed: p50 and p99 in microseconds per route.

    python bench/load_sse_latency_aiohttp.py [--samples 2000]
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

ROUTES = ("/aiohttp-sse", "/streamfx")


def serve() -> None:
    """Run the server until stdin closes; print the port on stdout first."""
    from aiohttp import web
    from aiohttp_sse import sse_response

    from streamfx import sse
    from streamfx.adapters.aiohttp import to_aiohttp

    subscribers: dict[str, set[asyncio.Queue[str]]] = {route: set() for route in ROUTES}

    async def source(route: str) -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        subscribers[route].add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            subscribers[route].discard(queue)

    async def publish(request: web.Request) -> web.StreamResponse:
        text = await request.text()
        for queue in subscribers.get("/" + request.match_info["route"], ()):
            queue.put_nowait(text)
        return web.Response(status=204)

    async def with_aiohttp_sse(request: web.Request) -> web.StreamResponse:
        async with sse_response(request) as response:
            async for text in source("/aiohttp-sse"):
                await response.send(text)
        return response

    async def with_streamfx(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp(request, sse(source("/streamfx"), heartbeat=None))

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/publish/{route}", publish)
        app.router.add_get("/aiohttp-sse", with_aiohttp_sse)
        app.router.add_get("/streamfx", with_streamfx)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


def publish_request(route: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"POST /publish{route} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_response(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    if not data.startswith(b"HTTP/1.1 204"):
        raise RuntimeError(data[:100])


def sample(port: int, route: str, count: int) -> list[float]:
    """`count` latencies (seconds) for `route`; for /baseline, the publish trip alone."""
    latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as publisher:
        publisher.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = None
        if route != "/baseline":
            stream = socket.create_connection(("127.0.0.1", port), timeout=10)
            stream.sendall(f"GET {route} HTTP/1.0\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += stream.recv(4096)
        try:
            for number in range(count):
                marker = f"event {number}"
                started = time.perf_counter()
                publisher.sendall(publish_request(route, marker))
                if stream is None:
                    read_response(publisher)
                    latencies.append(time.perf_counter() - started)
                    continue
                # aiohttp-sse ends lines with CRLF, streamfx with LF.
                wanted = (f"data: {marker}\n".encode(), f"data: {marker}\r".encode())
                seen = b""
                while wanted[0] not in seen and wanted[1] not in seen:
                    seen += stream.recv(65536)
                latencies.append(time.perf_counter() - started)
                read_response(publisher)
        finally:
            if stream is not None:
                stream.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        port = int(server.stdout.readline())
        results = {}
        for route in ("/baseline", *ROUTES):
            sample(port, route, 100)  # warm up
            results[route] = sorted(sample(port, route, args.samples))
    finally:
        server.stdin.close()
        server.wait(timeout=10)
        server.stdout.close()
    if args.json:
        percentiles = {
            route: {
                "p50": statistics.median(values) * 1e6,
                "p99": values[int(len(values) * 0.99) - 1] * 1e6,
            }
            for route, values in results.items()
        }
        args.json.write_text(json.dumps({"samples": args.samples, "latency_us": percentiles}))
    print(f"publish -> client latency on an idle stream, {args.samples} samples (us):")
    for route, values in results.items():
        p50 = statistics.median(values) * 1e6
        p99 = values[int(len(values) * 0.99) - 1] * 1e6
        print(f"  {route:12s} p50 {p50:7.0f}   p99 {p99:7.0f}")


if __name__ == "__main__":
    main()
