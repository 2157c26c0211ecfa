"""A real uvicorn process with an open SSE stream stops promptly on SIGTERM: the
client gets the farewell event and a clean end of the body, and the server exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

import streamfx
from tests._servers import bound_socket


def test_sigterm_drains_open_sse_streams_and_the_server_exits() -> None:
    sock = bound_socket()
    port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.apps.shutdown_app:app",
            "--fd",
            str(sock.fileno()),
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "30",
        ],
        pass_fds=[sock.fileno()],
    )
    sock.close()
    try:
        received = b""
        deadline = time.monotonic() + 20
        with httpx.Client(timeout=10) as client:
            while True:  # wait until the server accepts
                try:
                    stream = client.stream("GET", f"http://127.0.0.1:{port}/events")
                    response = stream.__enter__()
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline, "server did not start"
                    time.sleep(0.05)
            try:
                signalled_at = None
                for chunk in response.iter_bytes():  # ends cleanly, or raises
                    received += chunk
                    if signalled_at is None and b"tick 2" in received:
                        process.send_signal(signal.SIGTERM)
                        signalled_at = time.monotonic()
            finally:
                stream.__exit__(None, None, None)
        exit_code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    events = streamfx.SSEDecoder().feed(received)
    assert events[-1].event == "shutdown"
    assert events[-1].data == "server restarting"
    ticks = [e.data for e in events[:-1]]
    assert ticks == [f"tick {n}" for n in range(len(ticks))], "no gap before the farewell"
    # uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is a clean exit
    assert exit_code in (0, -signal.SIGTERM)
    assert signalled_at is not None
    # the graceful timeout is 30 s: ending well before it proves the stream was drained
    assert time.monotonic() - signalled_at < 10
