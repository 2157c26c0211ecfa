"""A throw-away local ``redis-server`` for ``make demo WORKERS=4`` (and the benchmarks).

`LocalRedis` runs Debian's ``redis-server`` on a free port of 127.0.0.1 with
``--save '' --appendonly no`` (nothing is written to disk: stopping it forgets
everything, which is what a demo wants). When ``redis-server`` is missing it is
installed with ``apt-get`` if this process runs as root; otherwise `RedisUnavailable`
says what to install. `stop` ends the server and waits for it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Final

__all__ = ["LocalRedis", "RedisUnavailable", "redis_server_binary"]

INSTALL_TIMEOUT: Final = 900
START_TIMEOUT: Final = 10.0


class RedisUnavailable(RuntimeError):
    """``redis-server`` is not installed and cannot be installed from here."""


def redis_server_binary(*, install: bool = True) -> str:
    """The path of ``redis-server``; installs Debian's package with apt-get when it is
    missing and this process is root (and `install` is true)."""
    found = shutil.which("redis-server") or _existing("/usr/bin/redis-server")
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if not install or apt_get is None or os.geteuid() != 0:
        raise RedisUnavailable(
            "redis-server is not installed; install it (Debian/Ubuntu: "
            "sudo apt-get install redis-server) or pass the URL of a running Redis"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("installing redis-server with apt-get...", flush=True)
    try:
        subprocess.run([apt_get, "update", "-qq"], check=True, env=env, timeout=INSTALL_TIMEOUT)
        subprocess.run(
            [apt_get, "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
            check=True,
            env=env,
            timeout=INSTALL_TIMEOUT,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        raise RedisUnavailable(f"apt-get could not install redis-server: {exc}") from exc
    found = shutil.which("redis-server") or _existing("/usr/bin/redis-server")
    if not found:
        raise RedisUnavailable("apt-get installed redis-server but it is not on PATH")
    return found


def _existing(path: str) -> str | None:
    return path if os.path.exists(path) else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LocalRedis:
    """One ``redis-server`` on 127.0.0.1, started by `start`, ended by `stop`."""

    def __init__(self, *, install: bool = True) -> None:
        self.binary = redis_server_binary(install=install)
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Start the server, wait until it answers ``PING``; return its URL."""
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self.process.poll() is not None:
                raise RedisUnavailable(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailable(f"redis-server did not answer within {START_TIMEOUT} s")
            time.sleep(0.02)
        return self.url

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> LocalRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
