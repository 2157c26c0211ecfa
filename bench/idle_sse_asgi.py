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

``--census N`` counts, side by side and on a fresh server each, what one idle
connection holds (`bench._census`): RSS per connection (no tracing), then with
tracemalloc on in the server: traced bytes, tasks, objects the garbage collector
tracks by type, ``bytes`` objects, and the traced bytes by package and by allocating
line (streamfx's, uvicorn's, Starlette's...), for the contenders above and the floor
and streamfx behind Starlette's routing (``starlette-raw``, ``starlette-streamfx``:
the soak's ASGI app is a Starlette app). ``--contenders a,b`` picks some.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

from bench import _census
from bench._uvicorn import Server, open_stream, run_uvicorn

CONNECTIONS = 3000
EVENTS = 300
GAP = 0.01
CONTENDERS = ("streamfx", "sse-starlette", "raw")
# --census also counts the floor and streamfx behind Starlette's routing.
CENSUS_CONTENDERS = (*CONTENDERS, "starlette-raw", "starlette-streamfx")
TRACED_FRAMES = 25  # enough to reach the allocating line of streamfx or uvicorn


# -- the server ------------------------------------------------------------------------


def build_app(census_dir: Path | None = None) -> Any:
    from sse_starlette import EventSourceResponse
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

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

    async def census(name: str, send: Any) -> None:
        snapshot = None if census_dir is None else census_dir / f"{name}.snapshot"
        body = json.dumps(_census.take(snapshot)).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    class RawIdle:
        """The floor as an ASGI callable a Starlette endpoint can return."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await raw_idle(receive, send)

    async def routed(request: Request) -> Any:
        if request.path_params["name"] == "starlette-streamfx":
            return to_asgi(sse(never()))
        return RawIdle()

    # The same two through Starlette's routing, as an application would serve them
    # (the soak's ASGI app does): what the framework holds per stream, apart.
    starlette = Starlette(routes=[Route("/idle/{name}", routed)])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        _, kind, name = scope["path"].split("/")
        if kind == "census":
            await census(name, send)
            return
        if name.startswith("starlette-"):
            await starlette(scope, receive, send)
            return
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


def serve(fd: int, census_dir: Path | None) -> None:
    if census_dir is not None:
        tracemalloc.start(TRACED_FRAMES)
    run_uvicorn(build_app(census_dir), fd, backlog=8192)


# -- the clients -----------------------------------------------------------------------


def idle_cost(name: str, connections: int, module: str = "bench.idle_sse_asgi") -> float:
    """Bytes of server memory per idle SSE connection."""
    server = Server(module=module)
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


def idle_census(
    name: str, connections: int, where: Path, module: str = "bench.idle_sse_asgi"
) -> tuple[dict[str, Any], Counter[str]]:
    """What one idle SSE connection of `name` adds to a tracing server: `per_stream`'s
    figures, and the traced bytes per stream by allocating line."""
    server = Server(where, module)
    try:
        for _ in range(10):  # warm-up: caches, interned names, the first of each kind
            open_stream(server.port, f"/idle/{name}").close()
        time.sleep(0.5)
        before = server.census(f"{name}-before")
        socks = [open_stream(server.port, f"/idle/{name}") for _ in range(connections)]
        time.sleep(1.0)
        after = server.census(f"{name}-after")
        for sock in socks:
            sock.close()
    finally:
        server.close()
    figures = _census.per_stream(before, after, connections)
    lines = _census.traced_by_owner(
        where / f"{name}-before.snapshot", where / f"{name}-after.snapshot"
    )
    return figures, Counter({line: size / connections for line, size in lines.items()})


def census_report(
    connections: int,
    names: tuple[str, ...],
    module: str = "bench.idle_sse_asgi",
    server: str = "uvicorn",
) -> dict[str, Any]:
    """Side by side, each contender on a fresh server (`module`'s): RSS per idle
    connection (no tracing), then a tracing server's census of the same connections;
    printed, and returned."""
    rss = {name: idle_cost(name, connections, module) for name in names}
    figures: dict[str, dict[str, Any]] = {}
    lines: dict[str, Counter[str]] = {}
    with tempfile.TemporaryDirectory() as where:
        for name in names:
            figures[name], lines[name] = idle_census(name, connections, Path(where), module)
    _census.print_report(f"{connections} connections, {server}", rss, figures, lines)
    return {"rss": rss, "census": figures, "lines": {n: dict(lines[n]) for n in names}}


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
    parser.add_argument(
        "--census", type=int, metavar="N", help="count what N idle connections hold, per contender"
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CENSUS_CONTENDERS),
        help="with --census: which, comma-separated (default: all)",
    )
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-census", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(args.serve_fd, args.serve_census)
        return
    if args.where is not None:
        where_memory_goes(args.where, args.kind)
        return
    if args.census is not None:
        found = census_report(args.census, tuple(args.contenders.split(",")))
        if args.json:
            args.json.write_text(json.dumps(found))
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
