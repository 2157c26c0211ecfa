"""Load script: one large file downloaded through uvicorn, streamfx vs Starlette.

One uvicorn process (uvloop + httptools) serves the same SIZE_MB file two ways:
``to_asgi(download(path))`` and Starlette's ``FileResponse(path)``. uvicorn offers no
zero-copy extension, so both read the file in chunks in worker threads. The client is
a raw socket in this process reading until ``Content-Length`` bytes of body arrived.
Each contender runs ROUNDS times, interleaved; the table shows the median MB/s.

Run: ``.venv/bin/python -m bench.load_download_asgi`` (``--size-mb``, ``--rounds``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._uvicorn import run_uvicorn, start_server

SIZE_MB = 200
ROUNDS = 5
CONTENDERS = ("streamfx", "starlette-file")


def build_app(path: str) -> Any:
    from starlette.responses import FileResponse

    from streamfx import download
    from streamfx.adapters.asgi import to_asgi

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/streamfx":
            await to_asgi(download(path))(scope, receive, send)
        else:
            await FileResponse(path)(scope, receive, send)

    return app


def serve(fd: int, path: str) -> None:
    run_uvicorn(build_app(path), fd)


def fetch(port: int, path: str) -> tuple[float, int]:
    """Seconds to receive the whole response, and the body's length."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.perf_counter()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, _, rest = received.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        remaining = length - len(rest)
        buffer = bytearray(1 << 20)
        while remaining > 0:
            count = sock.recv_into(buffer)
            if not count:
                raise RuntimeError(f"{path}: closed with {remaining} bytes missing")
            remaining -= count
        return time.perf_counter() - started, length


def main() -> None:
    parser = argparse.ArgumentParser(description="download throughput, side by side")
    parser.add_argument("--size-mb", type=int, default=SIZE_MB)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(args.serve_fd, args.path)
        return

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "big.bin")
        with open(path, "wb") as file:
            block = os.urandom(1 << 20)
            for _ in range(args.size_mb):
                file.write(block)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        server = start_server("bench.load_download_asgi", listener, "--path", path)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port)).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
            for name in CONTENDERS:  # warm-up (and the page cache)
                _, length = fetch(port, f"/{name}")
                if length != args.size_mb << 20:
                    raise RuntimeError(f"{name}: {length} bytes")
            for _ in range(args.rounds):
                for name in CONTENDERS:
                    seconds, length = fetch(port, f"/{name}")
                    rates[name].append(length / seconds / 1e6)
        finally:
            server.terminate()
            server.wait(10)
            listener.close()

    if args.json:
        args.json.write_text(json.dumps({"size_mb": args.size_mb, "mb_per_s": rates}))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    base = medians["starlette-file"]
    print(
        f"\n{args.size_mb} MB file, one client, uvicorn (uvloop, httptools), median of "
        f"{args.rounds} rounds"
    )
    print(f"{'contender':<16}{'MB/s':>10}{'x FileResponse':>16}")
    for name, median in medians.items():
        print(f"{name:<16}{median:>10,.0f}{median / base:>15.2f}x")


if __name__ == "__main__":
    main()
