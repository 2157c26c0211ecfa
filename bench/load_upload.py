"""Load script: multipart uploads end to end, each streamfx helper beside its server's
usual way, on the same server in the same run.

Three servers, one process each, started one after the other, each serving two routes:

- gunicorn (gthread worker, 4 threads): ``streamfx.adapters.wsgi.parts`` against Flask's
  ``request.files`` / ``request.form`` (Werkzeug's parser: fields in memory, files
  spooled to temporary files);
- uvicorn (uvloop, httptools): ``parts(request)`` against Starlette's
  ``await request.form()`` (fields in memory, files spooled to temporary files);
- aiohttp: ``streamfx.adapters.aiohttp.parts`` against aiohttp's own streaming reader
  (``await request.multipart()``, ``read_chunk``).

Two bodies: one file of FILE_MB MiB, and FIELDS small fields (10 bytes each). The
streamfx routes read every part's content and count it; the peers do what an app using
them does (the parsed form, its files stored by the framework), and count the same.
Every answer is checked (parts and bytes). The client is a raw socket in this process
sending the whole body as fast as the server takes it; the time is from the first byte
sent to the last byte of the answer. Each contender runs ROUNDS times, interleaved
with its peer; the tables show medians and the median of per-round ratios.

Run: ``.venv/bin/python -m bench.load_upload`` (``--file-mb``, ``--fields``,
``--rounds``, ``--json``).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._uvicorn import ROOT, run_uvicorn, start_server, wait_ready

FILE_MB = 100
FIELDS = 10_000
ROUNDS = 3
BOUNDARY = "----streamfxLoadBoundary4Qx9"
LIMIT = 1 << 31
SERVERS: dict[str, tuple[str, str]] = {  # server: (streamfx route, peer route)
    "gunicorn": ("streamfx", "flask"),
    "uvicorn": ("streamfx", "starlette"),
    "aiohttp": ("streamfx", "aiohttp-reader"),
}


# -- the bodies ----------------------------------------------------------------------


def file_body(megabytes: int) -> bytes:
    block = bytes(range(256)) * 4096  # 1 MiB with CR, LF and '-' in it
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    return head + block * megabytes + f"\r\n--{BOUNDARY}--\r\n".encode()


def fields_body(count: int) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f{index}"\r\n\r\n{index:010d}\r\n'
        for index in range(count)
    ]
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode()


# -- the apps (run in the server processes) ------------------------------------------


async def count_parts(stream: Any) -> str:
    """``"<parts> <content bytes>"`` of a streamfx upload, every part read."""
    count = size = 0
    async for part in stream:
        count += 1
        async for chunk in part:
            size += len(chunk)
    return f"{count} {size}"


def flask_app() -> Any:
    """gunicorn's app: ``/streamfx`` and ``/flask``."""
    from flask import Flask, request

    from streamfx.adapters.wsgi import parts

    app = Flask(__name__)
    app.config["MAX_FORM_PARTS"] = 1_000_000

    @app.post("/streamfx")
    def streamfx_route() -> str:
        count = size = 0
        with parts(
            request.environ, max_size=LIMIT, max_part_size=LIMIT, max_parts=1_000_000
        ) as stream:
            for part in stream:
                count += 1
                for chunk in part:
                    size += len(chunk)
        return f"{count} {size}"

    @app.post("/flask")
    def flask_route() -> str:
        count = size = 0
        for value in request.form.listvalues():
            count += len(value)
            size += sum(len(item.encode()) for item in value)
        for stored in request.files.listvalues():
            for file in stored:
                count += 1
                size += file.stream.seek(0, 2)
        return f"{count} {size}"

    return app


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.datastructures import UploadFile
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from streamfx.adapters.asgi import parts

    async def streamfx_route(request: Request) -> PlainTextResponse:
        async with parts(
            request, max_size=LIMIT, max_part_size=LIMIT, max_parts=1_000_000
        ) as stream:
            return PlainTextResponse(await count_parts(stream))

    async def starlette_route(request: Request) -> PlainTextResponse:
        count = size = 0
        async with request.form(max_files=1_000_000, max_fields=1_000_000) as form:
            for _, value in form.multi_items():
                count += 1
                if isinstance(value, UploadFile):
                    size += value.size or 0
                else:
                    size += len(value.encode())
        return PlainTextResponse(f"{count} {size}")

    return Starlette(
        routes=[
            Route("/streamfx", streamfx_route, methods=["POST"]),
            Route("/starlette", starlette_route, methods=["POST"]),
        ]
    )


def aiohttp_app() -> Any:
    from aiohttp import BodyPartReader, web

    from streamfx.adapters.aiohttp import parts

    async def streamfx_route(request: web.Request) -> web.Response:
        async with parts(
            request, max_size=LIMIT, max_part_size=LIMIT, max_parts=1_000_000
        ) as stream:
            return web.Response(text=await count_parts(stream))

    async def reader_route(request: web.Request) -> web.Response:
        count = size = 0
        reader = await request.multipart()
        async for part in reader:
            assert isinstance(part, BodyPartReader)
            count += 1
            while chunk := await part.read_chunk(65536):
                size += len(chunk)
        return web.Response(text=f"{count} {size}")

    app = web.Application(client_max_size=LIMIT)
    app.router.add_post("/streamfx", streamfx_route)
    app.router.add_post("/aiohttp-reader", reader_route)
    return app


def serve(server: str, fd: int) -> None:
    if server == "uvicorn":
        run_uvicorn(starlette_app(), fd)
    else:
        from aiohttp import web

        sock = socket.socket(fileno=fd)
        web.run_app(aiohttp_app(), sock=sock, print=None, access_log=None)


# -- the client ----------------------------------------------------------------------


def post(port: int, path: str, body: bytes) -> tuple[float, str]:
    """Seconds from the first byte sent to the end of the answer, and the answer."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.perf_counter()
        sock.sendall(head)
        sock.sendall(body)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
        seconds = time.perf_counter() - started
    status, _, rest = bytes(received).partition(b"\r\n")
    if b" 200 " not in status + b" ":
        raise RuntimeError(f"{path}: {bytes(received[:300])!r}")
    return seconds, rest.partition(b"\r\n\r\n")[2].decode()


def start(server: str) -> tuple[subprocess.Popen[bytes], socket.socket, int]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if server == "gunicorn":
        listener.listen(64)
        listener.set_inheritable(True)
        fd = listener.fileno()
        command = [sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", "--workers", "1"]
        command += ["--worker-class", "gthread", "--threads", "4", "--timeout", "120"]
        command += ["--log-level", "warning", "bench.load_upload:flask_app()"]
        process = subprocess.Popen(command, pass_fds=(fd,), cwd=ROOT)
    else:
        process = start_server("bench.load_upload", listener, "--server", server)
    wait_ready(port)
    return process, listener, port


def measure(
    rounds: int, bodies: dict[str, tuple[bytes, int, str]]
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Per server, per contender, per body: the rates of each round."""
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for server, contenders in SERVERS.items():
        process, listener, port = start(server)
        try:
            rates: dict[str, dict[str, list[float]]] = {name: {} for name in contenders}
            for body_name, (body, units, expected) in bodies.items():
                for name in contenders:  # warm-up, and the answer checked
                    _, answer = post(port, f"/{name}", body)
                    if answer != expected:
                        raise RuntimeError(f"{server} {name} {body_name}: {answer!r}")
                    rates[name][body_name] = []
                for _ in range(rounds):
                    for name in contenders:
                        seconds, _ = post(port, f"/{name}", body)
                        rates[name][body_name].append(units / seconds)
            results[server] = rates
        finally:
            process.terminate()
            process.wait(10)
            listener.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="uploads end to end, side by side")
    parser.add_argument("--file-mb", type=int, default=FILE_MB)
    parser.add_argument("--fields", type=int, default=FIELDS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(args.server, args.serve_fd)
        return

    big = file_body(args.file_mb)
    many = fields_body(args.fields)
    bodies = {
        # name: (body, units per request for the rate, the expected answer)
        "file": (big, len(big) / 1e6, f"1 {args.file_mb << 20}"),
        "fields": (many, args.fields, f"{args.fields} {args.fields * 10}"),
    }
    results = measure(args.rounds, bodies)
    if args.json:
        data = {"file_mb": args.file_mb, "fields": args.fields, "rounds": args.rounds}
        args.json.write_text(json.dumps({**data, "servers": results}))
    print(
        f"\nuploads end to end: a {args.file_mb} MiB file (MB/s) and {args.fields:,} "
        f"fields (fields/s), median of {args.rounds} rounds"
    )
    print(f"{'server':<10}{'contender':<16}{'MB/s':>10}{'fields/s':>12}{'x peer':>16}")
    for server, rates in results.items():
        mine, peer = SERVERS[server]
        for name, by_body in rates.items():
            ratios = "/".join(
                f"{_paired(rates[mine][body], rates[peer][body]):.2f}" if name == mine else "1.00"
                for body in ("file", "fields")
            )
            print(
                f"{server:<10}{name:<16}{statistics.median(by_body['file']):>10,.0f}"
                f"{statistics.median(by_body['fields']):>12,.0f}{ratios:>16}"
            )


def _paired(mine: list[float], peer: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(mine, peer, strict=True))


if __name__ == "__main__":
    main()
