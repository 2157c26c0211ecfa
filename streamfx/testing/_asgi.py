"""The ASGI side of `streamfx.testing`: `connect` (one HTTP request to an application in
process) and `lifespan` (its startup and shutdown). See the package docstring for the
promises."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import unquote

from streamfx.testing._client import (
    DEFAULT_TIMEOUT,
    AppDidNotReturn,
    ClientDisconnected,
    StreamAborted,
    StreamClient,
    StreamTimeout,
    _error_of,
    _Pipe,
    _raise_unreported,
    _stop,
)

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
"""Any ASGI application, whatever its framework's own types for scope and messages."""


@contextlib.asynccontextmanager
async def connect(
    app: ASGIApp,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    start_timeout: float = DEFAULT_TIMEOUT,
    disconnect_timeout: float = DEFAULT_TIMEOUT,
    capacity: int = 16,
    state: dict[str, Any] | None = None,
) -> AsyncIterator[StreamClient]:
    """Send one request to the ASGI application `app` in process and yield its response
    once it has started (status and headers), within `start_timeout` seconds.

    `path` may carry a query string; `headers` are added after ``host: testserver``;
    `body` is the whole request body, sent in one message; `state` is the lifespan
    state (from `lifespan`), copied into the request's scope. See the module docstring for
    what leaving the block does (disconnect, wait for the application, re-raise its error).
    """
    pipe = _Pipe(capacity)
    # the status and headers, or None when the application returned without them
    started: asyncio.Future[tuple[int, list[tuple[str, str]]] | None] = (
        asyncio.get_running_loop().create_future()
    )
    request: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if request:
            return request.pop()
        while not pipe.closed:
            pipe.changed.clear()
            await pipe.changed.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if pipe.closed:
            raise ClientDisconnected("the test client disconnected")
        kind = message["type"]
        if kind == "http.response.start" and not started.done():
            raw = message.get("headers", [])
            decoded = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]
            started.set_result((message["status"], decoded))
        elif kind == "http.response.body" and started.done() and not pipe.ended:
            more = message.get("more_body", False)
            await pipe.put(bytes(message.get("body", b"")), last=not more)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} at this point")

    async def run() -> None:
        try:
            await app(_http_scope(method, path, headers, state), receive, send)
        finally:
            pipe.changed.set()  # wake a reader: the application is done
            if not started.done():
                started.set_result(None)

    task = asyncio.create_task(run())
    try:
        status, response_headers = await _started(started, task, start_timeout)
    except BaseException:
        await _stop(task)
        _error_of(task)
        raise
    client = StreamClient(status, response_headers, pipe, task)
    try:
        yield client
    finally:
        pipe.close()
        await _wait_for_return(task, disconnect_timeout)
    _raise_unreported(client, task)


async def _started(
    started: asyncio.Future[tuple[int, list[tuple[str, str]]] | None],
    task: asyncio.Task[None],
    seconds: float,
) -> tuple[int, list[tuple[str, str]]]:
    await asyncio.wait({started}, timeout=seconds)
    if not started.done():
        raise StreamTimeout(f"the app did not start its response within {seconds} s", [])
    result = started.result()
    if result is not None:
        return result
    await asyncio.wait({task})  # it has returned or raised: only its last step is left
    if (error := _error_of(task)) is not None:
        raise error
    raise StreamAborted("the app returned without starting a response")


async def _wait_for_return(task: asyncio.Task[Any], seconds: float) -> None:
    """Wait up to `seconds` for the application to return after the disconnect; cancel
    it (and raise `AppDidNotReturn`) if it does not."""
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        await _stop(task)
        raise
    if not done:
        await _stop(task)
        _error_of(task)
        raise AppDidNotReturn(f"the app was still running {seconds} s after http.disconnect")


def _http_scope(
    method: str, path: str, headers: Sequence[tuple[str, str]], state: dict[str, Any] | None
) -> Message:
    raw_path, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "extensions": {},
        "state": dict(state or {}),  # a shallow copy per request, as servers make
    }


class LifespanFailed(RuntimeError):
    """The application answered ``lifespan.startup.failed`` or
    ``lifespan.shutdown.failed``; the message is the application's."""


@contextlib.asynccontextmanager
async def lifespan(
    app: ASGIApp, *, within: float = DEFAULT_TIMEOUT
) -> AsyncIterator[dict[str, Any]]:
    """Run `app`'s lifespan around the block: startup before it, shutdown after it.

    Yields the lifespan state (what a Starlette lifespan yields lands there): pass it
    to `connect` as ``state=`` so that requests see it, as servers do. An application
    that raises on the lifespan scope before answering does not support lifespan (the
    ASGI rule): the block runs without it. ``*.failed`` raises `LifespanFailed`; no
    answer within `within` seconds raises `StreamTimeout`. The application's task has
    ended when the block exits.
    """
    state: dict[str, Any] = {}
    to_app: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
    from_app: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.4"}}

    async def run() -> None:
        await app({**scope, "state": state}, to_app.get, from_app.put)

    task = asyncio.create_task(run())
    try:
        await to_app.put({"type": "lifespan.startup"})
        started = await _lifespan_answer(from_app, task, "startup", within)
    except BaseException:
        await _stop(task)
        _error_of(task)  # the failure is what is raised (Starlette re-raises it too)
        raise
    if started is None:  # no lifespan support
        await _stop(task)
        _error_of(task)
        yield state
        return
    try:
        yield state
    finally:
        try:
            await to_app.put({"type": "lifespan.shutdown"})
            await _lifespan_answer(from_app, task, "shutdown", within)
            await _wait_for_return(task, within)
        finally:
            await _stop(task)
    if (error := _error_of(task)) is not None:
        raise error


async def _lifespan_answer(
    from_app: asyncio.Queue[Message], task: asyncio.Task[None], phase: str, seconds: float
) -> Message | None:
    """The application's answer to ``lifespan.<phase>``; None when it raised first."""
    answer = asyncio.ensure_future(from_app.get())
    try:
        await asyncio.wait({answer, task}, timeout=seconds, return_when="FIRST_COMPLETED")
    finally:
        if not answer.done():
            answer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answer
    if answer.done() and not answer.cancelled():
        message = answer.result()
        if message["type"] == f"lifespan.{phase}.failed":
            raise LifespanFailed(message.get("message", ""))
        if message["type"] != f"lifespan.{phase}.complete":
            raise StreamAborted(f"the app answered lifespan.{phase} with {message['type']!r}")
        return message
    if task.done():
        if phase == "startup" and _error_of(task) is not None:
            return None
        raise StreamAborted(f"the app's lifespan ended without answering {phase}")
    raise StreamTimeout(f"the app did not answer lifespan.{phase} within {seconds} s", [])
