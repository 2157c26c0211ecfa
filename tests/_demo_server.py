"""Start the web demo (``python -m examples.demo``) as a user would, on a free port.

The demo installs its metrics hook process-wide, so it runs in its own process: the
tests see exactly what a user of ``make demo`` sees, and nothing leaks into other tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningDemo:
    base: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def running_demo(
    log: Path, *, file_mb: int = 4, workers: int = 1, timeout: float = 30.0
) -> Iterator[RunningDemo]:
    """Run the demo until the block ends (then SIGINT, as Ctrl-C); yield it once it
    answers and its download file is ready. The server's output goes to `log`.
    With `workers` > 1 the demo starts its own redis-server (see examples/demo)."""
    port = free_port()
    command = [sys.executable, "-m", "examples.demo", "--port", str(port)]
    command += ["--file-mb", str(file_mb), "--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=out, env=dict(os.environ))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the demo exited with {process.returncode}: {log.read_text()}")
            try:
                config = httpx.get(f"{base}/api/config", timeout=2).json()
                if config["file"]["written"] == config["file"]["size"]:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the demo did not start in {timeout} s: {log.read_text()}")
            time.sleep(0.1)
        yield RunningDemo(base, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
