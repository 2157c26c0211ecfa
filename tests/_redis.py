"""A real ``redis-server`` for the broadcast tests (nothing mocks Redis).

`redis_server_path()` finds Debian's ``redis-server``, installing the package with
apt-get when it is missing (CI runs as root); only when that is impossible (not root,
no apt-get) does the calling test skip, saying why. `RedisServer` runs one on a free
port of 127.0.0.1 with ``--save '' --appendonly no`` (a stop loses everything, like a
cache) and can be stopped and started again on the same port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests._servers import free_port

_INSTALL_TIMEOUT = 600


def redis_server_path() -> str:
    """The path of ``redis-server``, installed with apt-get if needed (else skip)."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        pytest.skip(
            "redis-server is not installed and cannot be installed here "
            "(installing Debian's redis-server needs apt-get and root)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt_get, "update"], check=True, env=env, timeout=_INSTALL_TIMEOUT)
    subprocess.run(
        [apt_get, "install", "-y", "--no-install-recommends", "redis-server"],
        check=True,
        env=env,
        timeout=_INSTALL_TIMEOUT,
    )
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    assert os.path.exists(found), "apt-get installed redis-server but it is not on PATH"
    return found


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1:`port`."""

    def __init__(self, *extra: str) -> None:
        self.path = redis_server_path()
        self.port = free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            self.path,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            *self.extra,
        ]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert self.process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (its data is gone: nothing is saved)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def command(self, *args: str) -> str:
        """Run one command with redis-cli and return its raw output."""
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        result = subprocess.run(
            [cli, "-p", str(self.port), *args], check=True, capture_output=True, timeout=10
        )
        return result.stdout.decode()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server shared by the tests of a session."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def exact_redis() -> Iterator[RedisServer]:
    """A redis-server whose ``MAXLEN ~`` trims to the entry (one entry per node),
    shared by the tests of a session."""
    server = RedisServer("--stream-node-max-entries", "1")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}:"
