"""What the uvicorn load scripts share: start a server process on an inherited socket,
wait until it accepts, serve an app, and read one whole chunked response.

The scripts run as modules (``python -m bench.load_sse_asgi``) so that this module is
importable both in the script and in the server process it starts.
"""

from __future__ import annotations

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
