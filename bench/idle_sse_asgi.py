"""Idle SSE connections and single-event latency through uvicorn, side by side.

Two measurements, uvicorn with uvloop and httptools, each contender in the same way:

- **Memory per idle connection**: for each contender a fresh server process; CONNECTIONS
  clients open an SSE stream whose source never yields (heartbeats at their defaults)
  and receive the response headers; the server's resident memory grows by X; X /
  CONNECTIONS is the cost of one idle connection. ``raw`` is a bare ASGI app (start,
  one comment, then ``await receive()``): the floor that uvicorn itself costs.
- **Single-event latency on an idle stream**: the server's source wakes every GAP
  seconds and yields one event carrying ``time.perf_counter()`` at that moment (a
  publish); the client notes ``perf_counter()`` when the bytes arrive (the clock is
  system-wide on Linux). p50 and p99 of EVENTS such events.

Run: ``.venv/bin/pip install -e '.[bench]'`` then ``.venv/bin/python -m bench.idle_sse_asgi``
(``--connections``, ``--events``, ``--gap``).

``--where N`` instead shows where streamfx's share goes: in this process, without a
server or sockets, N idle ``to_asgi(sse(never()))`` applications run against an ASGI
``receive`` that answers nothing until the end (an ``asyncio.Queue``'s ``get``, as
hypercorn's is: watched without a task, as under uvicorn and hypercorn), and
`tracemalloc` attributes every block still held to the innermost line of streamfx that
allocated it (or to the innermost line at all, marked ``(other)``, when no streamfx
frame is on the stack). Bytes per stream: streamfx's share, then by file and by line,
largest first (``(other)`` lines are the harness's and asyncio's: in a server, its own
task per connection and the like).
``--where N --kind broadcast`` does the same for N subscribers of one topic of an
in-process `Broadcast` (``hub.sse(topic)``), the hub included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

from bench._uvicorn import rss_bytes, run_uvicorn, start_server

CONNECTIONS = 3000
EVENTS = 300
GAP = 0.01
CONTENDERS = ("streamfx", "sse-starlette", "raw")


# -- the server ------------------------------------------------------------------------


def build_app() -> Any:
    from sse_starlette import EventSourceResponse

    from streamfx import sse
    from streamfx.adapters.asgi import to_asgi

    async def never() -> AsyncIterator[str]:
        await asyncio.get_running_loop().create_future()
        yield "unreachable"

    async def ticks(count: int, gap: float) -> AsyncIterator[str]:
        for _ in range(count):
            await asyncio.sleep(gap)
            yield repr(time.perf_counter())

    async def raw_idle(receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": []}
        start["headers"] = [(b"content-type", b"text/event-stream")]
        await send(start)
        await send({"type": "http.response.body", "body": b":\n\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        _, kind, name = scope["path"].split("/")
        if kind == "idle":
            if name == "streamfx":
                await to_asgi(sse(never()))(scope, receive, send)
            elif name == "sse-starlette":
                await EventSourceResponse(never())(scope, receive, send)
            else:
                await raw_idle(receive, send)
            return
        count, gap = scope["query_string"].decode().split(",")
        source = ticks(int(count), float(gap))
        if name == "streamfx":
            await to_asgi(sse(source))(scope, receive, send)
        else:
            await EventSourceResponse(source)(scope, receive, send)

    return app


def serve(fd: int) -> None:
    run_uvicorn(build_app(), fd, backlog=8192)


class Server:
    """A uvicorn subprocess on a free port."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.process = start_server("bench.idle_sse_asgi", self.listener)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port)).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        return rss_bytes(self.process.pid)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.listener.close()


# -- the clients -----------------------------------------------------------------------


def open_stream(port: int, path: str) -> socket.socket:
    """A connection that sent ``GET path`` and received the response headers."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"{path}: closed before the headers")
        received += chunk
    if not received.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{path}: {received[:100]!r}")
    return sock


def idle_cost(name: str, connections: int) -> float:
    """Bytes of server memory per idle SSE connection."""
    server = Server()
    try:
        open_stream(server.port, f"/idle/{name}").close()  # warm-up
        time.sleep(0.5)
        before = server.rss()
        socks = [open_stream(server.port, f"/idle/{name}") for _ in range(connections)]
        time.sleep(1.0)
        after = server.rss()
        for sock in socks:
            sock.close()
        return (after - before) / connections
    finally:
        server.close()


def latencies(server: Server, name: str, events: int, gap: float) -> list[float]:
    """Seconds from each event's publish to its arrival at the client."""
    sock = open_stream(server.port, f"/live/{name}?{events},{gap}")
    found: list[float] = []
    pending = b""
    try:
        while len(found) < events:
            chunk = sock.recv(65536)
            now = time.perf_counter()
            if not chunk:
                raise RuntimeError(f"{name}: closed after {len(found)} events")
            pending += chunk
            while b"data: " in pending:
                _, _, rest = pending.partition(b"data: ")
                value, newline, tail = rest.partition(b"\n")
                if not newline:
                    break
                found.append(now - float(value.strip()))
                pending = tail
    finally:
        sock.close()
    return found


async def _idle_streams(count: int, kind: str) -> tuple[int, Counter[str]]:
    """Bytes held by `count` idle streamfx applications of `kind` (``"sse"``: one
    ``sse()`` stream each; ``"broadcast"``: one subscriber of a hub's topic each, the
    hub included), by allocating line. Each stream's ``receive`` is an
    ``asyncio.Queue``'s ``get``, answered ``http.disconnect`` at the end."""
    from streamfx import sse
    from streamfx.adapters.asgi import to_asgi
    from streamfx.broadcast import Broadcast

    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    started = 0

    async def never() -> AsyncIterator[str]:
        await loop.create_future()
        yield "unreachable"

    goal, reached = 10, asyncio.Event()

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal started
        started += message["type"] == "http.response.body"
        if started == goal:
            reached.set()

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}

    async def until_started(total: int) -> None:
        nonlocal goal, reached
        if started < total:
            goal, reached = total, asyncio.Event()
            await reached.wait()

    hub = Broadcast()
    await hub.start()

    async def serve_one() -> None:
        # Each stream's receive is an asyncio.Queue's get, as hypercorn's is (uvicorn's
        # waits on an asyncio.Event the same way): the adapter watches it without a task.
        messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        stop.add_done_callback(lambda _: messages.put_nowait({"type": "http.disconnect"}))
        response = sse(never()) if kind == "sse" else hub.sse("topic")
        await to_asgi(response)(scope, messages.get, send)

    def stream() -> asyncio.Task[None]:
        return loop.create_task(serve_one())

    tasks = [stream() for _ in range(10)]  # warm-up: caches, interned names
    await until_started(10)
    tracemalloc.start(30)
    before = tracemalloc.take_snapshot()
    tasks += [stream() for _ in range(count)]
    await until_started(10 + count)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    by_line: Counter[str] = Counter()
    total = 0
    for stat in after.compare_to(before, "traceback"):
        if stat.size_diff <= 0:
            continue
        total += stat.size_diff
        frames = list(reversed(stat.traceback))  # innermost first
        mine = [frame for frame in frames if "/streamfx/" in frame.filename]
        if mine:
            where = f"{mine[0].filename.split('/streamfx/')[-1]}:{mine[0].lineno}"
        else:
            where = f"(other) {Path(frames[0].filename).name}:{frames[0].lineno}"
        by_line[where] += stat.size_diff
    stop.set_result(None)
    await asyncio.gather(*tasks)
    await hub.close()
    return total, by_line


def where_memory_goes(count: int, kind: str) -> None:
    total, by_line = asyncio.run(_idle_streams(count, kind))
    what = "SSE streams" if kind == "sse" else "broadcast subscribers"
    print(f"\n{count} idle streamfx {what} in process (tracemalloc, no server)")
    by_file: Counter[str] = Counter()
    for where, size in by_line.items():
        by_file[where.rsplit(":", 1)[0]] += size
    mine = sum(size for where, size in by_line.items() if not where.startswith("(other)"))
    print(f"{total / count:8.0f} B per stream in all, {mine / count:.0f} B of them streamfx's")
    print("by file, largest first:")
    for where, size in by_file.most_common(12):
        print(f"{size / count:8.0f} B  {where}")
    print("by line, largest first:")
    for where, size in by_line.most_common(25):
        print(f"{size / count:8.0f} B  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description="idle SSE connections and latency")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--gap", type=float, default=GAP)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--where", type=int, metavar="N", help="tracemalloc N idle streams")
    parser.add_argument(
        "--kind",
        choices=("sse", "broadcast"),
        default="sse",
        help="with --where: sse() streams or subscribers of one Broadcast topic",
    )
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(args.serve_fd)
        return
    if args.where is not None:
        where_memory_goes(args.where, args.kind)
        return

    print(f"\nidle SSE connections ({args.connections}), uvicorn (uvloop, httptools)")
    print(f"{'contender':<16}{'KB per connection':>20}")
    output: dict[str, Any] = {"connections": args.connections, "events": args.events}
    output["idle_bytes"] = {}
    output["latency_ms"] = {}
    for name in CONTENDERS:
        output["idle_bytes"][name] = cost = idle_cost(name, args.connections)
        print(f"{name:<16}{cost / 1024:>20.1f}", flush=True)

    print(f"\nlatency of one event on an idle stream ({args.events} events, {args.gap}s apart)")
    print(f"{'contender':<16}{'p50 ms':>10}{'p99 ms':>10}")
    server = Server()
    try:
        for name in ("streamfx", "sse-starlette"):
            values = sorted(latencies(server, name, args.events, args.gap))
            p50 = statistics.median(values) * 1000
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
            print(f"{name:<16}{p50:>10.3f}{p99:>10.3f}", flush=True)
            output["latency_ms"][name] = {"p50": p50, "p99": p99}
    finally:
        server.close()
    if args.json:
        args.json.write_text(json.dumps(output))


if __name__ == "__main__":
    main()
