"""Send a `StreamResponse` from an aiohttp handler: `to_aiohttp`.

    async def handler(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp(request, export(rows(), format="csv"))

This module and its private helpers (`_aiohttp_upload`, `_aiohttp_watch`) are the only
ones that import aiohttp (the ``streamfx[aiohttp]`` extra).

What `to_aiohttp` promises, in order:

1. ``response.for_request(request.method, request headers)`` is called first, so a
   download sees Range, If-Range and the conditional headers, and HEAD is answered.
   An error it raises is answered as in 3 (and the original body is closed).
2. HEAD, 1xx, 204 and 304 get the status and headers only; the body is never iterated.
3. The first body chunk is pulled *before* the status line is sent. An error there is
   answered as every adapter answers it (`streamfx.adapters._common`): a
   `streamfx.errors.StreamfxError` with its ``status_code``, ``headers`` and
   client-safe ``detail`` as a short ``text/plain`` body, anything else with 500 and
   the status phrase; the exception goes to the ``streamfx.adapters.aiohttp`` logger
   only (a 4xx at INFO, a 5xx at ERROR).
4. Without a ``Content-Length`` header the body goes out chunked; with one, exactly
   that many bytes are sent (a body that ends short is an error, see 5).
5. An error after the status line resets the connection (TCP RST, no closing chunk)
   and is re-raised, so a client never takes a truncated body for a complete one.
6. A client that goes away (a write raising `ConnectionError`, or the connection seen
   closed while the body is idle: it is checked every `disconnect_check` seconds) is
   not an error: the body is closed and the prepared response is returned. So is a
   client that stops reading: when one ``write`` of a chunk (with its drain) has waited
   `write_timeout` seconds, the connection is aborted (the rule every adapter shares:
   see `streamfx.adapters._common.WriteWatchdog`). If the handler's task is cancelled
   (aiohttp's ``handler_cancellation``, server shutdown), the body is closed and
   `CancelledError` propagates.
7. The body is closed (``aclose()``) exactly once, whatever happened, before this
   returns or raises; with streamfx bodies that cancels the producer tasks and runs
   every finalizer.
8. When ``response.file`` is set, the file range goes out through the event loop's
   ``sendfile`` on the connection's transport, as aiohttp's own ``web.FileResponse``
   does (zero copy on plain TCP); where the loop cannot, the body is iterated instead.

Uploads: `parts` feeds the request body into `streamfx.parse_multipart` and
turns an `UploadError` into aiohttp's own HTTP error (413, 415 or 400) with a short
``text/plain`` message.

Builders that refuse a request when they are called, before `to_aiohttp` runs (a
`download` of a missing file or of a path outside its root), raise a
`streamfx.errors.StreamfxError`; the `streamfx_errors` middleware answers every one a
handler raises before its response started, and ``error_response(exc)`` is the same
answer as a ``web.Response``, for a handler that catches the error itself.

Shutdown: `drain_on_shutdown(app)` makes the app's shutdown end open SSE streams on
purpose (held events, the farewell, a clean end) before aiohttp waits for its
handlers, instead of leaving them to be cancelled when the grace period runs out.

Writes go straight to aiohttp's payload writer, which drains (waits for the socket)
once more than 64 KiB are pending: a slow client therefore stops the loop that pulls
the body, and a ``"suspend"`` body stops its producer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import suppress

from aiohttp import web
from aiohttp.typedefs import Handler

from streamfx._core.shutdown import request_shutdown
from streamfx._response.response import FileRange, StreamResponse
from streamfx._upload.errors import UploadError
from streamfx.adapters._aiohttp_upload import parts, upload_http_error
from streamfx.adapters._aiohttp_watch import DisconnectWatch
from streamfx.adapters._common import (
    answer_error,
    check_seconds,
    check_write_timeout,
)
from streamfx.adapters._upload_body import UploadTimeout
from streamfx.errors import StreamfxError

__all__ = [
    "UploadTimeout",
    "drain_on_shutdown",
    "error_response",
    "parts",
    "streamfx_errors",
    "to_aiohttp",
]

logger = logging.getLogger("streamfx.adapters.aiohttp")

_NO_BODY_METHODS = frozenset({"HEAD"})
_LINGER_ZERO = struct.pack("ii", 1, 0)


def _has_no_body(method: str, status: int) -> bool:
    return method in _NO_BODY_METHODS or status < 200 or status in (204, 304)


async def to_aiohttp(
    request: web.BaseRequest,
    response: StreamResponse,
    *,
    disconnect_check: float = 0.5,
    write_timeout: float | None = 60.0,
) -> web.StreamResponse:
    """Prepare and write `response` for `request`; return the aiohttp response used.

    See the module docstring for the promises. `disconnect_check` is how often (in
    seconds) a stream checks that its client is still connected; `write_timeout`
    (seconds, None: never): a client that has not taken a chunk for this long is
    treated as gone (the zero-copy file path is not watched: a stalled ``sendfile``
    waits like aiohttp's ``FileResponse``). Raises `ValueError` at once for a
    `disconnect_check` or `write_timeout` that is not a positive number of seconds.
    """
    check_seconds("disconnect_check", disconnect_check)
    check_write_timeout(write_timeout)
    try:
        response = response.for_request(request.method, list(request.headers.items()))
    except Exception as exc:
        await response.aclose()
        return await _error_response(request, exc)
    task = asyncio.current_task()
    assert task is not None, "to_aiohttp must run inside a task"
    watch = DisconnectWatch(request, task, disconnect_check, write_timeout)
    out = web.StreamResponse(status=response.status, headers=response.headers)
    iterator = aiter(response.body)
    try:
        # A stream waits here, in this one frame: each coroutine it waits in below
        # would hold its frame (~280 bytes) for as long as the stream is open. Only
        # what runs once (`_start`) is in a helper, done before the body is written.
        first = await _start(request, response, out, iterator, watch)
        if not isinstance(first, bytes):
            return first
        # The writer's and the watchdog's methods are looked up per chunk, not bound
        # once: three bound methods would be held for the stream's life.
        writes = watch.writes
        try:
            writer = await out.prepare(request)
            assert writer is not None
            if first:
                writes.writing()
                await writer.write(first)
                writes.written()
            del first
            async for chunk in iterator:
                if chunk:
                    writes.writing()
                    await writer.write(chunk)
                    writes.written()
            if writer.length:
                raise RuntimeError(f"body ended {writer.length} bytes short of its Content-Length")
            watch.stop()
            await out.write_eof()
        except Exception as exc:
            if _client_left(request, exc):
                return out
            raise
        return out
    except asyncio.CancelledError:
        if watch.stop() and task.uncancel() == 0:
            # Our own cancellation: the client went away while the body was idle.
            out.force_close()
            return out
        raise
    finally:
        if watch.stop():
            # The watch fired, but the body swallowed the CancelledError it delivered.
            task.uncancel()
        try:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if iterator is not response.body:
                await response.aclose()


async def _start(
    request: web.BaseRequest,
    response: StreamResponse,
    out: web.StreamResponse,
    iterator: AsyncIterator[bytes],
    watch: DisconnectWatch,
) -> web.StreamResponse | bytes:
    """What runs before the body is written: a response without a body, or a file sent
    whole, is sent here and returned; otherwise the first chunk of the body (b"" for an
    empty body) is pulled, with the watch started, and returned for `to_aiohttp` to
    send after the status line. An error before the start is answered here."""
    if _has_no_body(request.method, response.status):
        return await _send_whole(request, out)
    if response.file is not None and _can_sendfile(request):
        sent = await _send_file(request, response.file, out)
        if sent is not None:
            return sent
        # No sendfile on this loop or transport after all: the body's chunks instead.
        watch.start()
        return b""
    watch.start()
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return b""
    except Exception as exc:
        return await _error_response(request, exc)


def _client_left(request: web.BaseRequest, exc: Exception) -> bool:
    """True when `exc`, raised after the start, only says that the client went away;
    otherwise the connection is reset (and the caller re-raises `exc`)."""
    transport = request.transport
    if isinstance(exc, ConnectionError) and (transport is None or transport.is_closing()):
        return True
    _abort(request)
    return False


def _can_sendfile(request: web.BaseRequest) -> bool:
    transport = request.transport
    return (
        transport is not None
        and transport.get_extra_info("sslcontext") is None
        and hasattr(asyncio.get_running_loop(), "sendfile")
    )


async def _send_file(
    request: web.BaseRequest, file: FileRange, out: web.StreamResponse
) -> web.StreamResponse | None:
    """Send `file` through the loop's ``sendfile``; None when the loop or the transport
    cannot (the status line may have gone out: the caller sends the body instead)."""
    loop = asyncio.get_running_loop()
    try:
        fobj = await loop.run_in_executor(None, file.path.open, "rb")
    except Exception as exc:
        return await _error_response(request, exc)
    try:
        await out.prepare(request)
        transport = request.transport
        if transport is None:
            return out
        try:
            if file.length:
                await loop.sendfile(transport, fobj, file.offset, file.length)
        except ConnectionError:
            # The client went away mid-file; the socket is broken but the transport
            # may not know yet, so close it rather than keep the connection alive.
            out.force_close()
            transport.abort()
            return out
        except NotImplementedError:
            return None
        await out.write_eof()
    except Exception as exc:
        if _client_left(request, exc):
            return out
        raise
    finally:
        await loop.run_in_executor(None, fobj.close)
    return out


async def _error_response(request: web.BaseRequest, exc: Exception) -> web.StreamResponse:
    return await _send_whole(request, _plain_response(exc))


async def _send_whole(request: web.BaseRequest, out: web.StreamResponse) -> web.StreamResponse:
    """Send a response that has no body to stream; a client already gone is no error."""
    try:
        await out.prepare(request)
        await out.write_eof()
    except ConnectionError:
        out.force_close()
    return out


def _plain_response(exc: BaseException) -> web.Response:
    """The short ``text/plain`` answer to `exc` (`answer_error`: the detail is logged)."""
    answer = answer_error(exc, logger)
    return web.Response(status=answer.status, body=answer.body, headers=answer.headers)


def _abort(request: web.BaseRequest) -> None:
    """Reset the connection: SO_LINGER 0 makes the close a TCP RST, not a FIN that an
    HTTP/1.0 client (whose body ends at the close) would take for a complete body."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):  # the socket may already be gone
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    transport.abort()


def drain_on_shutdown(app: web.Application) -> None:
    """Call `streamfx.request_shutdown` from `app`'s ``on_shutdown`` signal.

    aiohttp runs ``on_shutdown`` when its runner is cleaned up (``web.run_app`` on
    SIGINT/SIGTERM), after it stopped accepting connections and before it waits
    ``shutdown_timeout`` for the handlers. Drainable streams (SSE) then end cleanly;
    exports and downloads keep that grace period to finish.
    """

    async def request_drain(_app: web.Application) -> None:
        request_shutdown()

    app.on_shutdown.append(request_drain)


def error_response(exc: BaseException) -> web.Response:
    """An aiohttp ``web.Response`` answering `exc` as `to_aiohttp` answers an error
    raised before the first chunk: a `streamfx.errors.StreamfxError` (a `DownloadError`'s
    403/404, an `UploadError`'s 413/415/400/408, a `CircuitOpenError`'s 503 with
    ``Retry-After``) with its ``status_code``, ``headers`` and its ``detail`` as a short
    ``text/plain`` body; any other exception with 500 and the status phrase only. The
    exception is logged to the ``streamfx.adapters.aiohttp`` logger (a 4xx at INFO, a
    5xx at ERROR). For an `UploadError` the response closes the connection (the rest
    of the refused body is not wanted).

        try:
            response = download(name, root=ROOT)
        except StreamfxError as exc:
            return error_response(exc)
        return await to_aiohttp(request, response)
    """
    reply = _plain_response(exc)
    if isinstance(exc, UploadError):
        reply.force_close()
    return reply


@web.middleware
async def streamfx_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An aiohttp middleware that answers streamfx's errors with their status.

        app = web.Application(middlewares=[streamfx_errors])

    A `streamfx.errors.StreamfxError` raised by the handler before its response started
    (a `DownloadError`: 404 no such file, 403 outside the root; a `CircuitOpenError`:
    503 with ``Retry-After``; ...) becomes the answer `error_response` gives; an
    `UploadError` becomes aiohttp's 413/415/400/408 error with the upload error's
    detail, as `parts` does (aiohttp then reads and drops what the client still sends
    for its bounded lingering time, and closes). Anything else, and any error after the
    response started, passes through untouched.
    """
    try:
        return await handler(request)
    except UploadError as exc:
        if request.writer.output_size:
            raise
        raise upload_http_error(exc) from exc
    except StreamfxError as exc:
        if request.writer.output_size:
            raise
        return _plain_response(exc)
