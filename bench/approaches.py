"""The approaches side by side: backpressure, cleanup, errors and load, through real servers.

Every approach of `bench/approach_apps.py` (ASGI under uvicorn with uvloop and
httptools, aiohttp under its own server) is measured the same way, in the same run,
by raw-socket clients in this process talking to a server child process on 127.0.0.1:

- **backpressure** (a fresh server whose accepted sockets have a 32 KiB send buffer):
  N clients with a small receive buffer read a little every SLOW_EVERY s for a few seconds
  from an endless source that passes control to the loop before each event. Then
  ``/stats``: events produced per client against events the client received, and the
  growth of the server's resident memory (``VmRSS``) since before the clients came.
- **cleanup**: those clients then close their sockets; the server is polled until every
  opened source ran its ``finally`` (or CLEANUP_WAIT seconds passed): finalizers run,
  seconds it took, and asyncio tasks left beyond the idle server's.
- **throughput** (a second fresh server): C clients at once each read a stream of E
  events as fast as they can; total events/s and MB/s (body bytes), and the p50/p99 of
  the time each client took for its whole stream. (The sliding and dropping buffers may
  drop events a client is too slow for: the share delivered is recorded, and events/s
  counts delivered events only.)
- **live**: C clients each get E events, one every GAP seconds; each event carries the
  server's ``perf_counter`` at production (system-wide on Linux), the client notes its
  own when the bytes arrive: p50/p99 latency. Server memory per connection: RSS with
  every stream open, minus RSS before, over C.
- **errors**: a source failing before its first event and after three: the status line
  the client got, the events it got, and how the body ended (``complete``: a proper end
  of the chunked body; ``aborted``: the connection closed without it; ``hung``: nothing
  for READ_TIMEOUT seconds).

Each measurement but errors runs ``--runs`` times (fresh servers each run); every
load generator is bounded (event counts, durations, a timeout on every read).

Run: ``.venv/bin/python -m bench.approaches [--quick] [--json PATH] [--only NAME ...]``.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._uvicorn import rss_bytes
from bench.approach_apps import AIOHTTP_APPROACHES, ASGI_APPROACHES, EXPORTS, event_bytes

FULL: dict[str, Any] = {
    "runs": 5,
    "slow_seconds": 1.5,
    "slow_clients": [1, 1000],
    "throughput": [[1, 10_000], [100, 100], [1000, 10]],
    "live": [1000, 10, 0.05],
}
QUICK: dict[str, Any] = {
    "runs": 1,
    "slow_seconds": 0.5,
    "slow_clients": [1, 20],
    "throughput": [[1, 1000], [10, 50], [20, 5]],
    "live": [20, 5, 0.02],
}
READ_TIMEOUT = 10.0  # every client read; an error case with no end for this long: "hung"
SLOW_READ = 256  # bytes a slow client reads ...
SLOW_EVERY = 0.1  # ... every this many seconds
SMALL_SEND_BUFFER = 32 << 10  # the backpressure server's accepted sockets
SMALL_RECEIVE_BUFFER = 4096  # a slow client's socket
CLEANUP_WAIT = 5.0  # seconds the server gets to finalize after the clients left
METHOD = {
    "read_timeout": READ_TIMEOUT,
    "slow_read": SLOW_READ,
    "slow_every": SLOW_EVERY,
    "small_send_buffer": SMALL_SEND_BUFFER,
    "small_receive_buffer": SMALL_RECEIVE_BUFFER,
    "cleanup_wait": CLEANUP_WAIT,
    "event_bytes": event_bytes(),
}


@dataclass
class Server:
    """A server child process on a free port (``framework``: ``asgi`` or ``aiohttp``)."""

    framework: str
    small_send_buffer: bool = False

    def __post_init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.small_send_buffer:  # accepted sockets inherit it
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SEND_BUFFER)
        self.listener.bind(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        fd = self.listener.fileno()
        command = [sys.executable, "-m", "bench.approaches", "--serve-fd", str(fd)]
        command += ["--framework", self.framework]
        self.process = subprocess.Popen(command, pass_fds=(fd,))
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port)).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        return rss_bytes(self.process.pid)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.listener.close()


def get_stats(port: int) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as sock:
        sock.sendall(b"GET /stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    body = received.partition(b"\r\n\r\n")[2]
    result: dict[str, Any] = json.loads(body)
    return result


# -- raw-socket clients -----------------------------------------------------------------


async def connect(port: int, path: str, receive_buffer: int | None = None) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    return sock


async def recv(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recv(sock, size), READ_TIMEOUT)


async def slow_reader(sock: socket.socket, until: float, counts: list[int]) -> None:
    """Read SLOW_READ bytes every SLOW_EVERY s until `until`; count events in ``counts[0]``.

    A client that gets no byte for READ_TIMEOUT seconds counts as stalled (``counts[1]``).
    """
    tail = b""
    while time.monotonic() < until:
        try:
            chunk = await recv(sock, SLOW_READ)
        except TimeoutError:
            counts[1] += 1
            return
        if not chunk:
            return
        counts[0] += (tail + chunk).count(b"data: ")
        tail = chunk[-5:]
        await asyncio.sleep(SLOW_EVERY)


async def read_stream(sock: socket.socket) -> tuple[float, bytes]:
    """Read a whole chunked body; (seconds from now to its end, everything received)."""
    started = time.perf_counter()
    received = bytearray()
    try:
        while not received.endswith(b"\r\n0\r\n\r\n"):
            chunk = await recv(sock, 1 << 18)
            if not chunk:
                raise RuntimeError("connection closed before the end of the body")
            received += chunk
    finally:
        sock.close()
    return time.perf_counter() - started, bytes(received)


async def live_reader(sock: socket.socket, events: int, latencies: list[float]) -> None:
    pending = b""
    found = 0
    try:
        while found < events:
            chunk = await recv(sock, 65536)
            now = time.perf_counter()
            if not chunk:
                raise RuntimeError(f"closed after {found} of {events} events")
            pending += chunk
            while True:
                start = pending.find(b"data: ")
                end = pending.find(b" x", start + 6) if start >= 0 else -1
                if end < 0:
                    break
                stamp = pending[start + 6 : end].split()[1]
                latencies.append(now - float(stamp))
                found += 1
                pending = pending[end:]
    finally:
        sock.close()


# -- the measurements -------------------------------------------------------------------


async def backpressure(server: Server, name: str, clients: int, seconds: float) -> dict[str, Any]:
    idle = get_stats(server.port)
    before = server.rss()
    counts = [[0, 0] for _ in range(clients)]
    socks = await asyncio.gather(
        *(connect(server.port, f"/{name}?yield=1", SMALL_RECEIVE_BUFFER) for _ in range(clients))
    )
    until = time.monotonic() + seconds
    await asyncio.gather(*(slow_reader(s, until, c) for s, c in zip(socks, counts, strict=True)))
    loaded = await asyncio.to_thread(get_stats, server.port)
    grown = server.rss() - before
    produced = loaded["produced"].get(name, 0) - idle["produced"].get(name, 0)
    received = sum(c[0] for c in counts)
    stalled = sum(c[1] for c in counts)
    for sock in socks:
        sock.close()
    started = time.monotonic()
    while True:
        after = await asyncio.to_thread(get_stats, server.port)
        opened = after["opened"].get(name, 0) - idle["opened"].get(name, 0)
        finalized = after["finalized"].get(name, 0) - idle["finalized"].get(name, 0)
        if (finalized >= opened and after["tasks"] <= idle["tasks"]) or (
            time.monotonic() - started > CLEANUP_WAIT
        ):
            break
        await asyncio.sleep(0.05)
    return {
        "produced_per_client": produced / clients,
        "received_per_client": received / clients,
        "stalled_clients": stalled,
        "rss_growth_mb": grown / 1e6,
        "opened": opened,
        "finalized": finalized,
        "cleanup_seconds": time.monotonic() - started,
        "tasks_left": after["tasks"] - idle["tasks"],
    }


async def throughput(server: Server, name: str, clients: int, events: int) -> dict[str, Any]:
    started = time.perf_counter()
    socks = await asyncio.gather(
        *(connect(server.port, f"/{name}?count={events}") for _ in range(clients))
    )
    results = await asyncio.gather(*(read_stream(sock) for sock in socks))
    wall = time.perf_counter() - started
    delivered = sum(body.count(b"data: ") for _, body in results)
    if delivered > clients * events or (delivered < clients * events and "streamfx-" not in name):
        raise RuntimeError(f"{name}: {delivered} of {clients * events} events")
    nbytes = sum(len(body) for _, body in results)
    times = sorted(seconds for seconds, _ in results)
    return {
        "events_per_s": delivered / wall,
        "delivered": delivered / (clients * events),
        "mb_per_s": nbytes / wall / 1e6,
        "p50_ms": percentile(times, 0.5) * 1000,
        "p99_ms": percentile(times, 0.99) * 1000,
    }


async def live(server: Server, name: str, clients: int, events: int, gap: float) -> dict[str, Any]:
    before = server.rss()
    path = f"/{name}?count={events}&gap={gap}"
    socks = await asyncio.gather(*(connect(server.port, path) for _ in range(clients)))
    latencies: list[float] = []
    readers = asyncio.gather(*(live_reader(sock, events, latencies) for sock in socks))
    await asyncio.sleep(events * gap / 2)
    during = server.rss()
    await readers
    latencies.sort()
    return {
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "kb_per_connection": (during - before) / clients / 1024,
    }


async def error_case(
    server: Server, name: str, fail: int, marker: bytes = b"data: "
) -> dict[str, Any]:
    sock = await connect(server.port, f"/{name}?count=10&fail={fail}")
    received = b""
    ending = "hung"
    try:
        while True:
            chunk = await recv(sock, 65536)
            if not chunk:
                ending = "aborted"
                break
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            if b"transfer-encoding: chunked" in head.lower():
                if body.endswith(b"0\r\n\r\n"):
                    ending = "complete"
                    break
            elif b"content-length" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    ending = "complete"
                    break
    except (TimeoutError, ConnectionResetError) as exc:
        ending = "hung" if isinstance(exc, TimeoutError) else "aborted"
    finally:
        sock.close()
    status = received.split(b" ", 2)[1].decode() if received.startswith(b"HTTP/") else "none"
    return {"status": status, "events": received.count(marker), "ending": ending}


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))]


# -- the run ----------------------------------------------------------------------------


def framework_of(name: str) -> str:
    return "aiohttp" if name in AIOHTTP_APPROACHES else "asgi"


async def measure(name: str, params: dict[str, Any], first_run: bool) -> dict[str, Any]:
    """Every phase for one approach. A phase that fails (a client read timing out, a
    short stream) is recorded in ``failures`` and leaves its figures out; the other
    phases still run."""
    result: dict[str, Any] = {"backpressure": {}, "throughput": {}, "failures": []}

    async def phase(label: str, target: dict[str, Any], key: str, work: Any) -> None:
        try:
            target[key] = await work
        except (OSError, RuntimeError, TimeoutError) as exc:
            result["failures"].append(f"{label}: {type(exc).__name__} {exc}".strip())

    server = Server(framework_of(name), small_send_buffer=True)
    try:
        for clients in params["slow_clients"]:
            if clients > 1 and name == "queue-unbounded":
                continue  # grows without bound: one client shows it, 1,000 would swamp RAM
            work = backpressure(server, name, clients, params["slow_seconds"])
            await phase(
                f"backpressure, {clients} clients", result["backpressure"], str(clients), work
            )
    finally:
        server.close()
    server = Server(framework_of(name))
    try:
        clients, events, gap = params["live"]
        await phase(
            f"live, {clients} clients", result, "live", live(server, name, clients, events, gap)
        )
        for clients, events in params["throughput"]:
            work = throughput(server, name, clients, events)
            await phase(f"throughput, {clients} clients", result["throughput"], str(clients), work)
        if first_run:
            result["errors"] = {
                "before": await error_case(server, name, 0),
                "after": await error_case(server, name, 3),
            }
    finally:
        server.close()
    return result


async def export_errors() -> dict[str, Any]:
    """The error cases for a response whose first chunk is data (NDJSON rows)."""
    server = Server("asgi")
    try:
        return {
            name: {
                "before": await error_case(server, name, 0, b'"event"'),
                "after": await error_case(server, name, 3, b'"event"'),
            }
            for name in EXPORTS
        }
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="streaming approaches side by side")
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--only", nargs="*", default=[*ASGI_APPROACHES, *AIOHTTP_APPROACHES])
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--framework", default="asgi", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        from bench import approach_apps

        if args.framework == "aiohttp":
            approach_apps.serve_aiohttp(args.serve_fd)
        else:
            approach_apps.serve_asgi(args.serve_fd)
        return

    params = QUICK if args.quick else FULL
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.only}
    for run in range(params["runs"]):
        for name in args.only:  # interleaved: every approach once per run
            print(f"approaches: run {run + 1}, {name}", file=sys.stderr, flush=True)
            runs[name].append(asyncio.run(measure(name, params, run == 0)))
    output = {"params": params, "method": METHOD, "runs": runs}
    output["export_errors"] = asyncio.run(export_errors())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(output, indent=1))
    for name, results in runs.items():
        tp = results[0]["throughput"]
        rates = ", ".join(
            f"{c}: {statistics.median(r['throughput'][c]['events_per_s'] for r in results):,.0f}"
            for c in tp
        )
        print(f"{name:<20} events/s by clients {rates}")


if __name__ == "__main__":
    main()
