"""Real servers on 127.0.0.1 for integration tests.

`serve(app, server)` starts uvicorn or hypercorn *in the test's own loop* on a socket
bound to a free port, waits until it accepts connections, yields ``(host, port)`` and
shuts the server down afterwards (open connections get a short grace period). Running
in the test's loop lets a test count the app's tasks and finalizers directly.

`serve_command(argv, port)` runs a server as a subprocess (for servers that cannot run
in process, such as granian), waits until it accepts connections on `port` (take one
from `free_port`), and terminates it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

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
