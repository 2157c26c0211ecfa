"""Every adapter under every server it is tested with, as one list of `Target`s.

A `Target` names an adapter (ASGI through Starlette or FastAPI, Litestar, aiohttp, WSGI
through Flask, Quart, Django), the server it runs under, and what differs there *by design*:
the exact text of an error body, whether the adapter has a write timeout or an upload
helper, whether whole files go out without iterating the body, and so on.
tests/test_adapter_contract*.py run every contract test on every target; an adapter's
own test module uses the same fixtures over its own targets.

A test asks for a `Deployment`: the target's app serving the shared routes
(tests/_stream_routes.py) on 127.0.0.1, a fresh `Tally` of what its bodies did, the
folder it serves from, and an httpx client. Servers that run in the test's event loop
(uvicorn, hypercorn, aiohttp) start for each test; the others (waitress in a thread;
granian and gunicorn in another process, sharing the tally through a mapped file) start
once per module and target. A test that needs what a target lacks by design declares it with
`requires` and is skipped there with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import pytest

from streamfx import request_shutdown, reset_shutdown
from streamfx.metrics import set_metrics
from tests._client import wait_until
from tests._servers import (
    WAITRESS_OUTBUF,
    free_port,
    granian_command,
    gunicorn_command,
    launch,
    listening_socket,
    run_waitress,
    serve,
    serve_aiohttp,
    serve_waitress,
)
from tests.apps.asgi_app import fastapi_app, running_tasks, starlette_app
from tests.apps.tally import Tally, TallyMetrics

Adapter = Literal["asgi", "aiohttp", "wsgi", "quart", "django", "litestar"]
Capability = Literal[
    "write_timeout",
    "uploads",
    "sees_silent_disconnects",
    "concurrency",
    "server_shutdown",
    "upload_error_on_leave",
    "streams_uploads",
]

WHY_NOT: dict[tuple[str, Capability], str] = {
    ("django", "streams_uploads"): "Django's ASGI handler reads the whole request body "
    "(into a SpooledTemporaryFile) before it calls the view, so the view never sees a "
    "stalled upload: the request waits in Django, and a client that leaves is dropped "
    "there (RequestAborted) before any part exists. The streaming way is the ASGI "
    "adapter beside Django (tests/test_adapter_django.py)",
    ("quart", "upload_error_on_leave"): "Quart cancels the view's task when the client "
    "leaves mid-upload (its own receiver sees http.disconnect first), so the view gets "
    "CancelledError, not an UploadError: the app removes what it stored in its "
    "CancelledError handler, and nothing is refused",
    ("wsgi", "sees_silent_disconnects"): "WSGI: a server learns that a client left only "
    "when a write fails, and nothing is written before the first chunk",
    ("gunicorn-sync", "concurrency"): "gunicorn's sync worker serves one request at a time",
    ("quart", "server_shutdown"): "Quart runs a request in a task of its own, which the "
    "server's cancellation at shutdown does not reach",
    ("django", "server_shutdown"): "Django runs a request in a task of its own, which the "
    "server's cancellation at shutdown does not reach",
    ("granian", "server_shutdown"): "granian waits for open responses when told to stop "
    "(ending them is what request_shutdown is for), and is then killed",
    ("gunicorn-sync", "server_shutdown"): "gunicorn kills its worker after the graceful "
    "timeout: nothing of the app runs after that",
    ("gunicorn-gthread", "server_shutdown"): "gunicorn kills its worker after the graceful "
    "timeout: nothing of the app runs after that",
}


# Contract tests that fail on an adapter today: a defect of the adapter, reported, not a
# limit of its design. Marked xfail(strict=True), so a fix shows up as an XPASS failure
# and the line here must go.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Target:
    adapter: Adapter
    framework: str
    server: str
    zero_copy: Literal["whole", "ranges"] | None = None  # files the server sends itself
    server_buffer: int = 256 * 1024  # bytes the server may hold beyond the socket's

    @property
    def id(self) -> str:
        return f"{self.framework}-{self.server}"

    @property
    def remote(self) -> bool:
        """The server runs in another process."""
        return self.server in ("granian", "gunicorn-sync", "gunicorn-gthread")

    @property
    def per_module(self) -> bool:
        """The server serves every test of a module (it does not run in the test's loop,
        and is slow to start); the others start for each test."""
        return self.remote or self.server == "waitress"

    @property
    def resets_cut_bodies(self) -> bool:
        """aiohttp resets the connection of a body cut short by an error (a reset may
        discard what the client had not read yet); the others close it unfinished."""
        return self.adapter == "aiohttp"

    @property
    def cut_body_errors(self) -> tuple[type[Exception], ...]:
        """What httpx raises for a body cut short."""
        if self.resets_cut_bodies:
            return (httpx.RemoteProtocolError, httpx.ReadError)
        return (httpx.RemoteProtocolError,)

    def lacks(self, capability: Capability) -> str | None:
        """Why `capability` does not hold here by design, or None when it does."""
        return WHY_NOT.get((self.adapter, capability)) or WHY_NOT.get((self.server, capability))

    def error_text(self, status: int, message: str = "") -> str:
        """The exact body of the error response for `status`: every adapter sends the
        status phrase only; `message` (the error's own text, which may name server paths)
        goes to the server log, never to the client."""
        phrase = HTTPStatus(status).phrase
        assert not message or message not in phrase
        return phrase

    def upload_error_text(self, message: str) -> str:
        """The exact body of a refused upload, the same on every adapter: the
        `UploadError`'s message (written for the client)."""
        return message


TARGETS: tuple[Target, ...] = (
    Target("asgi", "starlette", "uvicorn", server_buffer=64 * 1024),
    Target("asgi", "starlette", "hypercorn"),
    # granian holds about 1.7 MB of a response in its own buffers (measured)
    Target("asgi", "starlette", "granian", zero_copy="whole", server_buffer=3 * 2**20),
    Target("asgi", "fastapi", "uvicorn", server_buffer=64 * 1024),
    Target("asgi", "fastapi", "hypercorn"),
    Target("litestar", "litestar", "uvicorn", server_buffer=64 * 1024),
    Target("litestar", "litestar", "hypercorn"),
    Target("aiohttp", "aiohttp", "aiohttp", zero_copy="ranges", server_buffer=128 * 1024),
    Target("wsgi", "flask", "waitress", zero_copy="ranges", server_buffer=WAITRESS_OUTBUF),
    Target("wsgi", "flask", "gunicorn-gthread", zero_copy="ranges", server_buffer=0),
    Target("wsgi", "flask", "gunicorn-sync", zero_copy="ranges", server_buffer=0),
    Target("quart", "quart", "uvicorn", server_buffer=64 * 1024),
    Target("quart", "quart", "hypercorn"),
    Target("django", "django", "uvicorn", server_buffer=64 * 1024),
    Target("django", "django", "hypercorn"),
)


def targets(*adapters: Adapter) -> list[Any]:
    """`TARGETS` of those adapters as pytest params."""
    return [pytest.param(t, id=t.id) for t in TARGETS if not adapters or t.adapter in adapters]


F = TypeVar("F", bound=Callable[..., Any])


def requires(*capabilities: Capability) -> Callable[[F], F]:
    """Skip the test on a target that lacks one of `capabilities` by design."""

    def mark(test: F) -> F:
        test.__requires__ = capabilities  # type: ignore[attr-defined]
        return test

    return mark


@dataclass
class Deployment:
    """A target's app, serving; see the module docstring."""

    target: Target
    port: int
    tally: Tally
    root: Path
    client: httpx.AsyncClient

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def tasks_left(self) -> int:
        """streamfx's tasks still running in the app (on its loop, or WSGI's)."""
        if self.target.remote:
            reply = await self.client.get("/_tasks")
            tasks: int = reply.json()["tasks"]
            return tasks
        return await tasks_here(self.target)

    async def settled(self) -> None:
        """Wait until no task of streamfx's is left in the app."""

        async def no_tasks() -> bool:
            return await self.tasks_left() == 0

        await wait_until(no_tasks, f"{self.target.id}: no streamfx task left")

    async def closed_once(self, bodies: int) -> None:
        """Wait until `bodies` counted bodies were closed and no streamfx task is left;
        then check that none was closed twice and every source that started finished."""
        await wait_until(lambda: self.tally.closes >= bodies, f"{bodies} bodies closed")
        await self.settled()
        assert self.tally.closes == bodies, f"{self.tally.closes} closes of {bodies} bodies"
        finished = (self.tally.finalized, self.tally.started)
        assert finished[0] == finished[1], f"{finished[0]} of {finished[1]} sources finished"

    async def request_shutdown(self) -> None:
        if self.target.remote:
            (await self.client.get("/_drain")).raise_for_status()
        else:
            request_shutdown()

    async def reset_shutdown(self) -> None:
        if self.target.remote:
            (await self.client.get("/_undrain")).raise_for_status()
        else:
            reset_shutdown()


async def tasks_here(target: Target) -> int:
    """streamfx's tasks still running for a `target` served in this process."""
    if target.adapter == "wsgi":
        from tests.apps.wsgi_app import loop_tasks

        return await asyncio.to_thread(loop_tasks)
    return running_tasks()


def prepare(root: Path) -> None:
    (root / "files").mkdir(exist_ok=True)
    (root / "uploads").mkdir(exist_ok=True)


@contextlib.asynccontextmanager
async def serve_here(target: Target, tally: Tally, root: Path) -> AsyncIterator[int]:
    """`target`'s app under its server in this process; yields the port."""
    prepare(root)
    previous = set_metrics(TallyMetrics(tally))
    try:
        async with _in_process(target, tally, root) as (_, port):
            yield port
    finally:
        set_metrics(previous)


def _in_process(
    target: Target, tally: Tally, root: Path
) -> contextlib.AbstractAsyncContextManager[tuple[str, int]]:
    if target.framework == "aiohttp":
        from tests.apps.aiohttp_app import aiohttp_app

        return serve_aiohttp(aiohttp_app(tally, root))
    if target.framework == "flask":
        from tests.apps.wsgi_app import create_app

        return serve_waitress(create_app(tally, root))
    server: Any = target.server
    if target.framework == "quart":
        from tests.apps.quart_app import quart_app

        return serve(quart_app(tally, root), server)
    if target.framework == "django":
        from tests.apps.django_app import django_app

        return serve(django_app(tally, root), server)
    if target.framework == "litestar":
        from tests.apps.litestar_app import litestar_app

        return serve(litestar_app(tally, root), server)
    build = starlette_app if target.framework == "starlette" else fastapi_app
    return serve(build(tally, root), server)


@contextlib.contextmanager
def serve_for_module(target: Target, root: Path) -> Iterator[tuple[int, Tally]]:
    """`target`'s app under a server that outlives a test (`Target.per_module`):
    ``(port, tally)``."""
    if target.remote:
        with serve_elsewhere(target, root) as port:
            yield port, Tally.mapped(root / "tally.bin")
        return
    from tests.apps.wsgi_app import create_app

    prepare(root)
    tally = Tally()
    with run_waitress(create_app(tally, root)) as (_, port):
        yield port, tally


@contextlib.contextmanager
def serve_elsewhere(target: Target, root: Path) -> Iterator[int]:
    """`target`'s app under its server in another process; yields the port. The tally
    is the file ``root/tally.bin``."""
    prepare(root)
    Tally.mapped(root / "tally.bin", create=True)
    env = {"STREAMFX_TEST_DIR": str(root)}
    if target.server == "granian":
        port = free_port()
        argv = granian_command(port, "tests.apps.asgi_app:app_from_env", factory=True)
        with launch(argv, f"http://127.0.0.1:{port}/_tasks", env, log=root / "server.log"):
            yield port
        return
    worker = target.server.removeprefix("gunicorn-")
    sock = listening_socket()
    port = sock.getsockname()[1]
    argv = gunicorn_command(
        sock.fileno(), worker, "tests.apps.wsgi_app:app_from_env()", preload=worker == "gthread"
    )
    if worker == "gthread":
        env["STREAMFX_TEST_WARM"] = "1"
    ready = f"http://127.0.0.1:{port}/_tasks"
    try:
        with launch(argv, ready, env, pass_fds=[sock.fileno()], log=root / "server.log"):
            sock.close()
            yield port
    finally:
        sock.close()


def unique_name(prefix: str, suffix: str = "") -> str:
    """A name no other test in this process used (for files in a shared root)."""
    return f"{prefix}-{os.getpid()}-{next(_names)}{suffix}"


_names = iter(range(1_000_000_000))
