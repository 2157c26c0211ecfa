"""Zero-configuration drain: an app that never calls `drain_on_signals` (nor anything
else of streamfx's shutdown), under a fresh process of uvicorn, hypercorn and granian,
with 100 open SSE streams: on SIGTERM every client gets the farewell event and a clean
end of its body, and the server exits within 2 s (each of them waits for open responses
without end, or for its own graceful timeout, without the drain).

The first SSE body served chains the drain to the server's own signal handlers
(`streamfx._core.shutdown`); hypercorn runs with ``-w 0`` (its worker processes never
see the signal: their parent stops them through an event)."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time

import pytest

import streamfx
from tests._client import close_all, dechunk, open_raw, read_to_eof, recv_until
from tests._servers import free_port, launch

STREAMS = 100
EXIT_WITHIN = 2.0
APP = "tests.apps.plain_sse_app:app"


def command(server: str, port: int) -> list[str]:
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", APP, *address, "--log-level", "warning"]
    if server == "hypercorn":
        return [sys.executable, "-m", "hypercorn", APP, "-b", f"127.0.0.1:{port}", "-w", "0"]
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", *address,
        "--workers", "1", "--log-level", "warning", APP,
    ]  # fmt: skip


async def open_streams(port: int, socks: list[socket.socket]) -> list[bytes]:
    """Open `STREAMS` streams into `socks`; return what each received up to its first
    event (so every one of them is being served)."""
    for _ in range(STREAMS):
        socks.append(await open_raw(port, "/events"))
    return list(await asyncio.gather(*(recv_until(sock, b"tick 0") for sock in socks)))


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "granian"])
async def test_sigterm_drains_every_stream_and_the_server_exits(server: str) -> None:
    port = free_port()
    with launch(command(server, port), f"http://127.0.0.1:{port}/") as process:
        socks: list[socket.socket] = []
        try:
            heads = await open_streams(port, socks)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            exited = asyncio.ensure_future(asyncio.to_thread(wait_for_exit, process))
            reads = (read_to_eof(sock, EXIT_WITHIN * 5) for sock in socks)
            rests = await asyncio.gather(*reads, return_exceptions=True)
            exit_code, exit_time = await exited
        finally:
            close_all(socks)
    assert exit_code is not None, f"{server} still running {EXIT_WITHIN * 5} s after SIGTERM"
    took = exit_time - signalled
    print(f"{server}: {STREAMS} streams drained, exited {took:.2f} s after SIGTERM")
    assert took < EXIT_WITHIN, f"{server} took {took:.2f} s to exit"
    for head, rest in zip(heads, rests, strict=True):
        assert isinstance(rest, bytes), f"reading the body failed: {rest!r}"
        body, clean = dechunk(head + rest)
        assert clean, f"the body did not end cleanly: {rest[-80:]!r}"
        events = streamfx.SSEDecoder().feed(body)
        assert (events[-1].event, events[-1].data) == ("shutdown", "server restarting")


def wait_for_exit(process: subprocess.Popen[bytes]) -> tuple[int | None, float]:
    try:
        code = process.wait(timeout=EXIT_WITHIN * 5)
    except subprocess.TimeoutExpired:
        return None, time.monotonic()
    return code, time.monotonic()
