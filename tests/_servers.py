"""Real servers on 127.0.0.1 for integration tests.

In the test's own loop (so that a test can count the app's tasks and finalizers
directly), each yielding ``(host, port)`` once the server accepts connections and
shutting it down afterwards (open connections get a short grace period):

- `serve(app, server)`: an ASGI app under uvicorn or hypercorn;
- `serve_aiohttp(app)`: an aiohttp app under its own `AppRunner`.

`run_waitress(app)` (and `serve_waitress(app)` for an async test) runs a WSGI app under
waitress in a thread of this process.

In another process: `serve_command(argv, port)` (async) and `launch(argv, ready_url)` (sync,
for a server that outlives one test) run a server as a subprocess, wait until it
accepts connections (answers), and terminate it afterwards. `gunicorn_command` and
`granian_command` build their command lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from wsgiref.types import WSGIApplication

import httpx
from aiohttp import web
from waitress import wasyncore
from waitress.server import TcpWSGIServer, create_server

Server = Literal["uvicorn", "hypercorn"]
SERVERS: tuple[Server, ...] = ("uvicorn", "hypercorn")


def bound_socket() -> socket.socket:
    """A listening-ready TCP socket on 127.0.0.1 with a port the kernel chose."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


async def wait_until_accepting(port: int, seconds: float = 10.0) -> None:
    """Return once a TCP connection to 127.0.0.1:`port` succeeds."""
    async with asyncio.timeout(seconds):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


@contextlib.asynccontextmanager
async def serve(
    app: Any, server: Server = "uvicorn", **uvicorn_options: Any
) -> AsyncIterator[tuple[str, int]]:
    """Run `app` under `server` in this loop; yields ``("127.0.0.1", port)``.

    `uvicorn_options` go to ``uvicorn.Config`` (``http="h11"``, say)."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    try:
        if server == "uvicorn":
            async with _uvicorn(app, sock, **uvicorn_options):
                await wait_until_accepting(port)
                yield "127.0.0.1", port
        else:
            async with _hypercorn(app, sock):
                await wait_until_accepting(port)
                yield "127.0.0.1", port
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def _uvicorn(app: Any, sock: socket.socket, **options: Any) -> AsyncIterator[None]:
    import uvicorn

    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=logging.WARNING,
        lifespan="off",
        timeout_graceful_shutdown=1,
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def _hypercorn(app: Any, sock: socket.socket) -> AsyncIterator[None]:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn closes it
    config.graceful_timeout = 1
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    stop = asyncio.Event()
    task = asyncio.create_task(hypercorn_serve(app, config, shutdown_trigger=stop.wait))
    try:
        yield
    finally:
        stop.set()
        await task


def free_port() -> int:
    """A port that was free a moment ago (for servers that must bind it themselves)."""
    with bound_socket() as sock:
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve_command(
    argv: Sequence[str], port: int, env: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[str, int]]:
    """Run `argv` (a server listening on 127.0.0.1:`port`) for the duration."""
    process = await asyncio.create_subprocess_exec(*argv, env={**os.environ, **(env or {})})
    try:
        await wait_until_accepting(port, seconds=30)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def serve_aiohttp(
    app: web.Application, *, shutdown_timeout: float = 2.0, handler_cancellation: bool = False
) -> AsyncIterator[tuple[str, int]]:
    """Run an aiohttp `app` in this loop; yields ``("127.0.0.1", port)``."""
    runner = web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=handler_cancellation,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield "127.0.0.1", int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


WAITRESS_OUTBUF = 256 * 1024  # what waitress may hold for a client that does not read


def start_waitress(app: WSGIApplication, **options: Any) -> tuple[TcpWSGIServer, threading.Thread]:
    """Waitress serving `app` on 127.0.0.1 (a free port) from a thread of this process;
    `options` override its settings."""
    settings: dict[str, Any] = {
        "threads": 220,
        "connection_limit": 400,
        "outbuf_high_watermark": WAITRESS_OUTBUF,
        "expose_tracebacks": False,
        "asyncore_loop_timeout": 0.1,  # how soon close() is noticed
    }
    server = create_server(app, host="127.0.0.1", port=0, **{**settings, **options})
    assert isinstance(server, TcpWSGIServer)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return server, thread


def stop_waitress(server: TcpWSGIServer, thread: threading.Thread) -> None:
    """Close from waitress's own I/O thread (closing its sockets from another thread
    races with its poll): the listener, the trigger and every connection, which ends
    the loop; then stop the request threads."""
    wake: Any = server.trigger  # a waitress.trigger.trigger (typed as int in the stubs)
    connections: Any = server._map  # type: ignore[attr-defined]
    wake.pull_trigger(lambda: wasyncore.close_all(connections))
    thread.join(5)
    server.task_dispatcher.shutdown()


@contextlib.contextmanager
def run_waitress(app: WSGIApplication) -> Iterator[tuple[str, int]]:
    """Waitress serving `app` for the block; yields ``("127.0.0.1", port)``."""
    server, thread = start_waitress(app)
    try:
        yield "127.0.0.1", int(server.getsockname()[1])
    finally:
        stop_waitress(server, thread)


@contextlib.asynccontextmanager
async def serve_waitress(app: WSGIApplication, **options: Any) -> AsyncIterator[tuple[str, int]]:
    """`run_waitress` for an async test (stopping blocks, so it runs in a thread);
    `options` override waitress's settings."""
    server, thread = start_waitress(app, **options)
    try:
        yield "127.0.0.1", int(server.getsockname()[1])
    finally:
        await asyncio.to_thread(stop_waitress, server, thread)


def wait_until_answering(url: str, seconds: float, process: subprocess.Popen[bytes]) -> None:
    """Return once a GET of `url` gets an answer; fail if `process` exits or time runs
    out. (An HTTP answer, not a connection: a listening socket the test handed over
    accepts connections before the server runs.)"""
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.HTTPError:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer in {seconds} s") from None
            time.sleep(0.05)


@contextlib.contextmanager
def launch(
    argv: Sequence[str],
    ready_url: str,
    env: Mapping[str, str] | None = None,
    *,
    pass_fds: Sequence[int] = (),
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` (a server) until the block ends, from the moment `ready_url` answers."""
    output = log.open("wb") if log is not None else None
    process = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, pass_fds=pass_fds, stdout=output, stderr=output
    )
    try:
        wait_until_answering(ready_url, 30, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            process.kill()
            process.wait()
        if output is not None:
            output.close()


def listening_socket() -> socket.socket:
    """A socket listening on 127.0.0.1 (a free port), inheritable by a subprocess."""
    sock = bound_socket()
    sock.listen(512)
    return sock


def gunicorn_command(fd: int, worker: str, app: str, *, preload: bool = False) -> list[str]:
    """gunicorn with one `worker`-class worker serving `app` on the listening socket `fd`."""
    command = [sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", "--workers", "1"]
    command += ["--worker-class", worker, "--graceful-timeout", "2", "--log-level", "warning"]
    if worker == "gthread":
        command += ["--threads", "220"]
    if preload:
        command.append("--preload")
    return [*command, app]


def granian_command(port: int, app: str, *, factory: bool = False) -> list[str]:
    """granian (ASGI, one worker) serving `app` on 127.0.0.1:`port`."""
    command = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
    if factory:
        command.append("--factory")
    return [*command, app]
