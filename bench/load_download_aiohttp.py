"""Download throughput through `to_aiohttp` against aiohttp's own `web.FileResponse`.

One aiohttp server (a child process, default asyncio loop) serves the same 64 MB file
three ways:

- ``/fileresponse``: ``web.FileResponse(path)``, the peer (sendfile);
- ``/streamfx``: ``to_aiohttp(request, download(path))`` (sendfile through ``file``);
- ``/aiohttp-chunks``: a plain aiohttp ``StreamResponse`` writing the same file read as
  an async iterable of 64 KiB chunks (no sendfile): the peer for the chunked path;
- ``/streamfx-chunks``: ``to_aiohttp(request, download(chunks, size=...))`` with the
  same chunks: the adapter's per-chunk path (download's bounded buffer and task, the
  writer).

The client is a blocking socket in this process reading into one preallocated buffer,
one fresh connection per download. Rounds alternate the order of the routes. Prints
the median MB/s of each route and the median of its per-round ratios to
``/fileresponse`` (paired, so that drift in the machine's load cancels out).

    python bench/load_download_aiohttp.py [--size-mb 64] [--rounds 9]
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
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

ROUTES = ("/fileresponse", "/streamfx", "/aiohttp-chunks", "/streamfx-chunks")


def serve(path: Path) -> None:
    """Run the server until stdin closes; print the port on stdout first."""
    from aiohttp import web

    from streamfx import download
    from streamfx.adapters.aiohttp import to_aiohttp

    size = path.stat().st_size

    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as file:
            while chunk := await asyncio.to_thread(file.read, 65536):
                yield chunk

    async def fileresponse(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path)

    async def aiohttp_chunks(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(size)})
        await response.prepare(request)
        async for chunk in chunks():
            await response.write(chunk)
        await response.write_eof()
        return response

    async def streamfx_file(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp(request, download(path))

    async def streamfx_chunks(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp(request, download(chunks(), size=size))

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/fileresponse", fileresponse)
        app.router.add_get("/streamfx", streamfx_file)
        app.router.add_get("/aiohttp-chunks", aiohttp_chunks)
        app.router.add_get("/streamfx-chunks", streamfx_chunks)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


def fetch(port: int, route: str, buffer: bytearray) -> tuple[float, int]:
    """GET `route` on a fresh connection; return (seconds, body bytes) after the body."""
    view = memoryview(buffer)
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {route} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            received = sock.recv(65536)
            if not received:
                raise RuntimeError(f"{route}: connection closed in the head")
            head += received
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{route}: {head[:100]!r}")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        got = len(rest)
        while got < length:
            n = sock.recv_into(view)
            if not n:
                raise RuntimeError(f"{route}: body ended at {got} of {length} bytes")
            got += n
    return time.perf_counter() - started, got


def start_server(path: Path) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def stop_server(server: subprocess.Popen[str]) -> None:
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdin.close()
    server.wait(timeout=10)
    server.stdout.close()


def make_file(directory: str, size_mb: int) -> Path:
    path = Path(directory) / "payload.bin"
    with path.open("wb") as file:
        for _ in range(size_mb):
            file.write(os.urandom(2**20))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=Path)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    with tempfile.TemporaryDirectory() as directory:
        path = make_file(directory, args.size_mb)
        server, port = start_server(path)
        try:
            buffer = bytearray(2**20)
            for route in ROUTES:  # warm up: page cache, imports, first connections
                fetch(port, route, buffer)
            rates: dict[str, list[float]] = {route: [] for route in ROUTES}
            for round_number in range(args.rounds):
                order = ROUTES if round_number % 2 == 0 else tuple(reversed(ROUTES))
                for route in order:
                    seconds, nbytes = fetch(port, route, buffer)
                    rates[route].append(nbytes / seconds / 1e6)
        finally:
            stop_server(server)
    if args.json:
        args.json.write_text(json.dumps({"size_mb": args.size_mb, "mb_per_s": rates}))
    print(f"{args.size_mb} MB file, {args.rounds} rounds: median MB/s, and the median of the")
    print("per-round ratios to /fileresponse (each round's routes run back to back):")
    for route in ROUTES:
        median = statistics.median(rates[route])
        paired = statistics.median(
            mine / peer for mine, peer in zip(rates[route], rates["/fileresponse"], strict=True)
        )
        print(f"  {route:18s} {median:9.0f} MB/s  {paired:5.2f}x")
    chunked = statistics.median(
        mine / peer
        for mine, peer in zip(rates["/streamfx-chunks"], rates["/aiohttp-chunks"], strict=True)
    )
    print(f"  /streamfx-chunks vs /aiohttp-chunks: {chunked:.2f}x")


if __name__ == "__main__":
    main()
