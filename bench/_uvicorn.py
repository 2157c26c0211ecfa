"""What the uvicorn load scripts share: start a server process on an inherited socket,
wait until it accepts, serve an app, and read one whole chunked response; `Server`
(a server subprocess on a free port, its RSS and census) and `open_stream` for the idle
scripts (`bench.idle_sse_asgi`, `bench.idle_sse_aiohttp`).

The scripts run as modules (``python -m bench.load_sse_asgi``) so that this module is
importable both in the script and in the server process it starts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def start_server(module: str, sock: socket.socket, *arguments: str) -> subprocess.Popen[bytes]:
    """Run ``python -m module --serve-fd FD *arguments`` on the listening socket `sock`."""
    fd = sock.fileno()
    command = [sys.executable, "-m", module, "--serve-fd", str(fd), *arguments]
    return subprocess.Popen(command, pass_fds=(fd,), cwd=ROOT)


def run_uvicorn(app: Any, fd: int, **options: Any) -> None:
    """Serve `app` with uvicorn on socket `fd`: uvloop, httptools, no lifespan, quiet,
    unless `options` say otherwise."""
    import uvicorn

    settings: dict[str, Any] = {
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "off",
        "log_level": "warning",
        "access_log": False,
    }
    uvicorn.run(app, fd=fd, **{**settings, **options})


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid`, in bytes (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def wait_ready(port: int, seconds: float = 20.0) -> None:
    """Return once 127.0.0.1:`port` accepts a connection."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def fetch_chunked(port: int, path: str) -> tuple[float, bytes]:
    """Seconds from sending ``GET path`` to the end of the chunked body, and the response."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.perf_counter()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        received = bytearray()
        while not received.endswith(b"\r\n0\r\n\r\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError(f"{path}: connection closed before the end of the body")
            received += chunk
        return time.perf_counter() - started, bytes(received)


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds process `pid` has used (Linux, in clock ticks: 10 ms)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` has used (Linux)."""
    return sum(cpu_times(pid))


def write_calls(pid: int) -> int:
    """How many write-like system calls process `pid` has made (Linux: ``syscw`` in
    /proc/PID/io; ``write`` and ``writev`` on a socket count, ``sendmsg`` does not)."""
    with open(f"/proc/{pid}/io") as io:
        for line in io:
            if line.startswith("syscw:"):
                return int(line.split()[1])
    raise RuntimeError(f"no syscw for process {pid}")


class Server:
    """A server subprocess on a free port: ``python -m module --serve-fd FD`` (uvicorn
    here; `bench.idle_sse_aiohttp`'s aiohttp); `census_dir`: tracing memory, its
    snapshots dumped there."""

    def __init__(self, census_dir: Path | None = None, module: str = "bench.idle_sse_asgi") -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        traced = () if census_dir is None else ("--serve-census", str(census_dir))
        self.process = start_server(module, self.listener, *traced)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port)).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        return rss_bytes(self.process.pid)

    def census(self, name: str) -> dict[str, Any]:
        """The server's `bench._census.take` (its snapshot named `name`)."""
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(f"GET /census/{name} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            received = bytearray()
            while chunk := sock.recv(1 << 20):
                received += chunk
        _, _, body = bytes(received).partition(b"\r\n\r\n")
        result: dict[str, Any] = json.loads(body)
        return result

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:  # a tracing server closing thousands of streams
            self.process.kill()
            self.process.wait()
        self.listener.close()


def open_stream(port: int, path: str) -> socket.socket:
    """A connection that sent ``GET path`` and received the response headers."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"{path}: closed before the headers")
        received += chunk
    if not received.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{path}: {received[:100]!r}")
    return sock
