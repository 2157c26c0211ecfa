"""Server CPU per write to a broadcast subscriber: streamfx beside a raw ASGI app, one run.

What the fan-out p99 is made of at saturation: every subscriber is written once per
cycle, so the server's CPU per write, times the subscribers, is a cycle. This script
measures that cost where it is paid, in a real server: for each contender a fresh
uvicorn process (uvloop, httptools, one worker) on 127.0.0.1, SUBSCRIBERS raw-socket
subscribers (`bench._subscribers`), and RATE events/s for SECONDS, slow enough that
nothing batches (each event is one write to each subscriber: writes = deliveries).
The server's user and system CPU seconds (``/proc/PID/stat``) from the first event to
the last arrival, divided by the deliveries, are its microseconds per write. Rounds
alternate between the contenders; the medians are reported.

- ``streamfx``: ``to_asgi(hub.sse(topic))`` on an in-process `Broadcast`, the code of
  this tree (with ``--compare DIR``, also ``streamfx@DIR``: the same app run from
  another checkout, e.g. main, for a before/after in one run);
- ``raw``: the floor, a hand-written ASGI app: a shared list of encoded frames and one
  ``asyncio.Event`` the publisher sets (and clears) per event; each subscriber sends
  what follows its index with one ``await send`` per wake-up (no disconnect watch, no
  write timeout, no heartbeat, no metrics, no replay).

Both servers install the same metrics hook as `bench.broadcast_apps` (it notes closed
streams and ignores the rest). The publisher and the client's own work are the same
for both; the difference of the rows is what streamfx adds per write.

Run (under the benchmark lock): ``.venv/bin/python -m bench.load_broadcast_cpu
[--rounds 3] [--seconds 5] [--compare /work/main] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench._subscribers import Subscribers
from bench._uvicorn import ROOT, run_uvicorn, wait_ready

SUBSCRIBERS = 1000
RATE = 10.0
SECONDS = 5.0
SIZE = 64
TOPIC = "bench"


# -- the server ------------------------------------------------------------------------


def build_app() -> Any:
    import streamfx
    from bench.broadcast_apps import Closures, payload
    from streamfx.adapters.asgi import to_asgi
    from streamfx.broadcast import Broadcast
    from streamfx.metrics import set_metrics

    set_metrics(Closures())
    hub = Broadcast(history=2000)
    frames: list[bytes] = []
    news = asyncio.Event()
    stopping = False  # the run is over: the raw streams end
    tasks: set[asyncio.Task[None]] = set()

    async def publish(contender: str, count: int, rate: float, t0: float) -> None:
        for k in range(1, count + 1):
            delay = t0 + (k - 1) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            text = payload(k, SIZE)
            if contender == "raw":
                frames.append(f"id: {k}\ndata: {text}\n\n".encode())
                news.set()
                news.clear()
            else:
                await hub.publish(TOPIC, text)

    async def raw(send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b": ok\n\n", "more_body": True})
        sent = len(frames)
        while True:
            if sent == len(frames):
                await news.wait()
            if stopping:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            chunk = b"".join(frames[sent:])
            sent = len(frames)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def answer(send: Any, body: dict[str, Any]) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal stopping
        if scope["type"] == "lifespan":
            await receive()
            await hub.start()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await hub.close(grace=0.5)
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/sub/streamfx":
            await to_asgi(hub.sse(TOPIC))(scope, receive, send)
        elif path == "/sub/raw":
            await raw(send)
        elif path == "/start":
            query = dict(part.split("=") for part in scope["query_string"].decode().split("&"))
            run = publish(
                query["contender"], int(query["count"]), float(query["rate"]), float(query["t0"])
            )
            task = asyncio.create_task(run)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await answer(send, {"pid": os.getpid(), "streamfx": streamfx.__file__})
        elif path == "/stop":  # the raw streams end (they watch no disconnect)
            stopping = True
            news.set()
            await answer(send, {})
        else:
            await answer(send, {"error": path})

    return app


def serve(fd: int) -> None:
    from bench.broadcast_apps import raise_open_files

    raise_open_files()
    run_uvicorn(build_app(), fd, lifespan="on", backlog=8192, timeout_graceful_shutdown=1)


# -- the client ------------------------------------------------------------------------


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process `pid` (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def one_run(contender: str, tree: Path, p: dict[str, Any]) -> dict[str, Any]:
    """A fresh server from `tree`, `p["subscribers"]` subscribers, `p["rate"]` events/s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fd = listener.fileno()
    # streamfx from `tree`, this script (and `bench`) from this checkout
    launcher = (
        f"import runpy, sys; sys.path.insert(0, {str(tree)!r}); import streamfx; "
        f"sys.path[0] = {str(ROOT)!r}; sys.argv[1:] = ['--serve-fd', '{fd}']; "
        "runpy.run_module('bench.load_broadcast_cpu', run_name='__main__')"
    )
    server = subprocess.Popen([sys.executable, "-c", launcher], pass_fds=(fd,), cwd=ROOT)
    try:
        wait_ready(port)
        path = "/sub/raw" if contender == "raw" else "/sub/streamfx"
        pool = Subscribers(port, path, p["subscribers"])
        try:
            pool.open()
            time.sleep(0.5)
            count = round(p["rate"] * p["seconds"])
            t0 = time.perf_counter() + 0.3
            kind = "raw" if contender == "raw" else "streamfx"
            query = f"contender={kind}&count={count}&rate={p['rate']}&t0={t0}"
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/start?{query}", method="POST"
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                served_by = json.loads(response.read())["streamfx"]
            while time.perf_counter() < t0:
                time.sleep(0.001)
            user0, system0 = cpu_times(server.pid)
            pool.run(count, t0 + p["seconds"] + 5.0)
            user1, system1 = cpu_times(server.pid)
            delivered = pool.delivered()
            stop = urllib.request.Request(f"http://127.0.0.1:{port}/stop", method="POST")
            urllib.request.urlopen(stop, timeout=30).close()
        finally:
            pool.close()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        listener.close()
    writes = max(delivered, 1)
    return {
        "contender": contender,
        "streamfx": served_by,
        "delivered_share": delivered / (p["subscribers"] * count),
        "user_us_per_write": (user1 - user0) / writes * 1e6,
        "system_us_per_write": (system1 - system0) / writes * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="server CPU per broadcast write, side by side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--compare", type=Path, help="also run streamfx from this checkout")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(args.serve_fd)
        return
    from bench.broadcast_apps import raise_open_files

    raise_open_files()
    p = {"subscribers": args.subscribers, "rate": args.rate, "seconds": args.seconds}
    contenders: list[tuple[str, Path]] = [("raw", ROOT), ("streamfx", ROOT)]
    if args.compare is not None:
        contenders.append((f"streamfx@{args.compare}", args.compare.resolve()))
    load_before = os.getloadavg()
    runs: list[dict[str, Any]] = []
    for round_number in range(args.rounds):
        for contender, tree in contenders:
            run = one_run(contender, tree, p)
            runs.append(run)
            print(
                f"round {round_number + 1} {contender:<28} user {run['user_us_per_write']:6.1f} us"
                f" + sys {run['system_us_per_write']:5.1f} us per write,"
                f" delivered {run['delivered_share']:.1%} (streamfx: {run['streamfx']})",
                flush=True,
            )
    print(f"\nmedians of {args.rounds} rounds, {args.subscribers} subscribers, {args.rate:g} ev/s:")
    summary = {}
    for contender, _ in contenders:
        mine = [run for run in runs if run["contender"] == contender]
        user = statistics.median(run["user_us_per_write"] for run in mine)
        system = statistics.median(run["system_us_per_write"] for run in mine)
        summary[contender] = {"user_us_per_write": user, "system_us_per_write": system}
        print(f"  {contender:<28} user {user:6.1f} us + sys {system:5.1f} us per write")
    load = {"before": load_before, "after": os.getloadavg()}
    print(f"load average before {load['before']}, after {load['after']}")
    if args.json:
        args.json.write_text(
            json.dumps({"params": p, "runs": runs, "summary": summary, "load": load}, indent=1)
        )


if __name__ == "__main__":
    main()
