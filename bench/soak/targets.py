"""The servers the soak runs against: every streamfx adapter on a real server, and the
peers, each a subprocess on a free loopback port with its log in a file.

A `Target` knows how to start its server; `Server` is one running process: its
``/stats``, its log (read case by case), a signal, and its end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11

from bench.soak.client import KeepAlive, fetch, fetch_json

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "bench-results" / "soak"
PY = sys.executable


@dataclass(frozen=True)
class Target:
    """One server and app. `argv` gets the port and the number of threads a WSGI server
    needs (one per open stream)."""

    name: str
    kind: str  # "streamfx", "peer", or "reference" (see `counted`)
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    threaded: bool = False  # one server thread per open stream (WSGI)
    # Not a WSGI server, but a thread held per open stream all the same: Django's ASGI
    # handler runs each request in its own asgiref ThreadSensitiveContext, whose thread
    # lives as long as the request (idle showed 2 -> 5,002 threads for 5,000 streams,
    # the bare Django view as much as streamfx's).
    thread_per_request: bool = False

    @property
    def holds_a_thread_per_stream(self) -> bool:
        return self.threaded or self.thread_per_request

    only: frozenset[str] | None = None  # the scenarios it takes part in (None: all)
    # Checks (by the start of their name) shown but not counted on this server: a case
    # the README advises against there, shown to say why (`uncounted_why`), while its
    # other checks count.
    uncounted: tuple[str, ...] = ()
    uncounted_why: str = ""

    @property
    def peer(self) -> bool:
        return self.kind == "peer"

    @property
    def counted(self) -> bool:
        """Whether its failed checks fail the run: streamfx as the README advises to run
        it. A peer's are not, nor a "reference" row's (streamfx under settings the README
        advises against, shown to say why)."""
        return self.kind == "streamfx"

    def argv(self, port: int, threads: int) -> list[str]:
        return [part.format(port=port, threads=threads) for part in self.command]


UVICORN = [PY, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--loop", "uvloop"]
UVICORN += ["--http", "httptools", "--lifespan", "on", "--timeout-graceful-shutdown", "10"]
UVICORN += ["--no-access-log", "--log-level", "info", "--backlog", "4096"]
# hypercorn -w 0: one process. With workers (the default is one), hypercorn's parent
# takes SIGTERM and stops its workers through an event: a worker never sees the signal,
# so streamfx.drain_on_signals() there cannot drain.
HYPERCORN = [PY, "-m", "hypercorn", "-w", "0", "-b", "127.0.0.1:{port}"]
HYPERCORN += ["--graceful-timeout", "10", "--backlog", "4096", "--error-logfile", "-"]
GUNICORN = [PY, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "{threads}"]
GUNICORN += ["--worker-connections", "12000", "-b", "127.0.0.1:{port}", "--backlog", "4096"]
GUNICORN += ["--graceful-timeout", "10", "--timeout", "120", "--log-level", "info"]
GUNICORN += ["-c", str(ROOT / "bench" / "soak" / "gunicorn_conf.py")]
AIOHTTP = [PY, "-m", "bench.soak.app_aiohttp", "{port}"]
WAITRESS = [PY, "-m", "waitress", "--listen=127.0.0.1:{port}", "--threads={threads}"]
WAITRESS += ["--connection-limit=12000", "--backlog=4096"]
# what the README advises for streams on waitress: a stalled client blocks its thread
# (and so meets the write timeout) after 64 KiB instead of 16 MiB of output held per
# connection (256 KiB before: 200 stalled clients then held 51 MiB, past the readers'
# memory bound, and a busy waitress took ~24 s to fill them instead of ~13 s)
WAITRESS_TUNED = [*WAITRESS, "--outbuf-high-watermark=65536"]
# The README does not advise waitress for SSE beside many stalled clients: there the
# healthy clients' p99 was 2.2-5.8x the run without them in every setting tried (see
# the README's WSGI section), so that check is shown and not counted; its evictions,
# memory, tasks and descriptors count.
WAITRESS_NOT_FOR = ("healthy p99 within",)
WAITRESS_WHY = "the README does not advise waitress for SSE beside stalled clients"

TARGETS: tuple[Target, ...] = (
    Target("asgi / uvicorn", "streamfx", (*UVICORN, "bench.soak.app_asgi:app")),
    Target("aiohttp", "streamfx", tuple(AIOHTTP)),
    Target("quart / hypercorn", "streamfx", (*HYPERCORN, "bench.soak.app_quart:app")),
    Target(
        "django / uvicorn",
        "streamfx",
        (*UVICORN, "bench.soak.app_django:app"),
        thread_per_request=True,
    ),
    Target("wsgi / gunicorn", "streamfx", (*GUNICORN, "bench.soak.app_wsgi:app"), threaded=True),
    Target(
        "wsgi / waitress (README settings)",
        "streamfx",
        (*WAITRESS_TUNED, "bench.soak.app_wsgi:app"),
        threaded=True,
        only=frozenset({"churn", "readers"}),
        uncounted=WAITRESS_NOT_FOR,
        uncounted_why=WAITRESS_WHY,
    ),
    Target(
        "wsgi / waitress (defaults)",
        "reference",
        (*WAITRESS, "bench.soak.app_wsgi:app"),
        threaded=True,
        only=frozenset({"readers"}),
    ),
    Target(
        "sse-starlette / uvicorn",
        "peer",
        (*UVICORN, "bench.soak.app_asgi:app"),
        env={"SOAK_IMPL": "sse-starlette"},
    ),
    Target("aiohttp-sse", "peer", tuple(AIOHTTP), env={"SOAK_IMPL": "aiohttp-sse"}),
    Target(
        "django bare view / uvicorn",
        "peer",
        (*UVICORN, "bench.soak.app_django:app"),
        env={"SOAK_IMPL": "django-bare"},
        thread_per_request=True,
        only=frozenset({"idle"}),
    ),
)


def uncounted(row: str, check: str) -> str | None:
    """Why `check` on the row of the server named `row` is shown and not counted (its
    `Target.uncounted`), or None when it counts."""
    for target in TARGETS:
        if target.name == row and check.startswith(target.uncounted):
            return target.uncounted_why
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A target's server process (use ``async with``)."""

    def __init__(self, target: Target, threads: int = 64, tag: str = "") -> None:
        self.target = target
        self.threads = threads
        self.port = free_port()
        LOGS.mkdir(parents=True, exist_ok=True)
        slug = "".join(c if c.isalnum() else "-" for c in f"{target.name} {tag}").strip("-")
        self.log_path = LOGS / f"{slug}.log"
        self._log = self.log_path.open("wb")
        self._offset = 0
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            target.argv(self.port, threads),
            cwd=tempfile.gettempdir(),  # the apps are found through PYTHONPATH
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **target.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.exit_code: int | None = None
        self._stats = KeepAlive(self.port)

    async def __aenter__(self) -> Server:
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.target.name} exited: see {self.log_path}")
            try:
                status, _ = await fetch(self.port, "/ping", seconds=2)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.target.name} did not start: see {self.log_path}")
            await asyncio.sleep(0.1)
        self.log_since()  # the start-up lines are not a case's
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stats(self) -> dict[str, Any]:
        """The server's ``/stats``, asked on one kept-alive connection."""
        try:
            return await fetch_json(self.port, "/stats", self._stats)
        except (OSError, RuntimeError, h11.ProtocolError):  # once more, on a new connection
            self._stats.close()
            return await fetch_json(self.port, "/stats", self._stats)

    def log_since(self) -> list[str]:
        """The log lines written since the last call."""
        self._log.flush()
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        cut = data.rfind(b"\n") + 1
        self._offset += cut
        return data[:cut].decode("utf-8", "replace").splitlines()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait_exit(self, seconds: float) -> bool:
        """True if the process exited within `seconds`."""
        deadline = time.monotonic() + seconds
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        self.exit_code = self.process.returncode
        return True

    def kill(self) -> None:
        """SIGKILL the server's process group; wait for it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.exit_code = self.process.wait()

    async def stop(self) -> None:
        self._stats.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            if not await self.wait_exit(20):
                self.kill()
        self._log.close()


def error_lines(lines: list[str]) -> list[str]:
    """The lines of a log that start an ERROR record (``ERROR name: ...`` from the apps,
    ``ERROR:`` from uvicorn, ``[ERROR]`` from hypercorn and gunicorn)."""
    return [line for line in lines if line.startswith(("ERROR ", "ERROR:")) or "[ERROR]" in line]
