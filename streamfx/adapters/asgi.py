"""`to_asgi`: send a `StreamResponse` from any ASGI server or framework.

``to_asgi(response)`` is an ASGI application, a `StreamingASGIResponse`. When Starlette
is installed that class *is* a Starlette ``Response``, so a Starlette or FastAPI
endpoint returns it as it is, annotated ``-> Response`` (mypy --strict accepts it, and
FastAPI's ``/openapi.json`` stays valid: FastAPI sees a response, not a model) and
FastAPI attaches its background tasks; `openapi` documents the media types. Without
Starlette it is a plain ASGI callable: call it with ``(scope, receive, send)`` from
anything that speaks ASGI. Litestar has its own adapter (`streamfx.adapters.litestar`),
as Quart and Django do (their views must return their own response objects).

What the application promises, for one HTTP request:

- ``response.for_request(method, headers)`` is called first, with the request's
  method and headers (decoded as latin-1), so a download honours Range and
  conditional requests (skipped for a response without ``respond_to``, for which it
  would return the response itself); an error it raises is answered as below. A
  ``HEAD`` request gets the status and headers only: the body is never iterated.
- The first body chunk is pulled *before* ``http.response.start``. An error there
  is answered as every adapter answers it (`streamfx.adapters._common`): a
  `streamfx.errors.StreamfxError` with its ``status_code``, ``headers`` (a 503 from an
  open circuit carries ``Retry-After``) and client-safe ``detail`` as a short
  ``text/plain`` body; anything else with 500 and the status phrase. The exception
  itself goes to the ``streamfx.adapters.asgi`` logger only (a 4xx at INFO, a 5xx at
  ERROR).
- After the start, every non-empty chunk is sent as it comes with ``more_body=True``
  (the body already batches many events per chunk when the producer is ahead); the
  end of the body sends ``more_body=False``. An error from the body after the start
  is re-raised, so the server aborts the connection without the final chunk of a
  chunked body (uvicorn and hypercorn close the connection): a client never takes a truncated
  body for a complete one.
- A client that goes away stops the body at once: a watch listens on ``receive`` for
  ``http.disconnect`` and cancels the sending task (`DisconnectWatch`: under uvicorn
  and hypercorn without a task of its own), and ``send``
  raising ``OSError`` (ASGI 2.4) counts as a disconnect too. A disconnect is not an
  error: the application returns normally.
- A client that stops reading is treated as gone, too: when one ``send`` of a body
  chunk has waited `write_timeout` seconds (60 by default) on the server's flow
  control, the body is cancelled as on a disconnect, so a stalled client cannot pin a
  producer forever (the rule every adapter shares: see `WriteWatchdog`). Its HTTP/1.x
  connection is aborted too where the server lets the transport be found (uvicorn):
  without that the server's close waits for the client to read, holding the socket,
  and uvicorn logs an error per eviction (see ``_asgi_abort``). Elsewhere (hypercorn,
  granian) the socket stays until the client goes.
- Whatever the ending (completion, error, disconnect, cancellation), the body is
  closed exactly once (``aclose()``) before the application returns, so every
  finalizer of its pipeline has run, and the watch on ``receive`` has stopped: no task
  is left behind.
- When the server offers ``http.response.pathsend`` in ``scope["extensions"]`` and
  ``response.file`` covers a whole file, the file is sent by path (zero copy) and the
  body is closed without being iterated.

Nothing is done per chunk beyond one ``send`` call with a fresh three-key message and
a clock reading for the write timeout: no task, no copy, and no timer of the
response's own (the write timeout is a lazy deadline behind the loop's one shared
timer, set only while a chunk waits: `streamfx._core.deadlines`).

Errors raised before any response exists (``download()`` refusing a path, an upload
refused by its limits) are answered with ``error_response(exc)``: the exception's
``status`` and a short plain-text body. Uploads: ``parts(request, ...)`` (Starlette,
FastAPI) or ``parts_from_asgi(scope, receive, ...)`` feed the request body to
`streamfx.parse_multipart`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from streamfx._core.util import aclose_iterator
from streamfx._response.response import StreamResponse
from streamfx.adapters._asgi_openapi import openapi
from streamfx.adapters._asgi_types import ASGIApp, Message, Receive, Scope, Send
from streamfx.adapters._asgi_upload import (
    HasASGIRequest,
    parts,
    parts_from_asgi,
)
from streamfx.adapters._asgi_watch import DisconnectWatch
from streamfx.adapters._common import (
    WriteWatchdog,
    answer_error,
    check_write_timeout,
)
from streamfx.adapters._upload_body import UploadTimeout
from streamfx.adapters._upload_refusal import refusal_headers

__all__ = [
    "ASGIApp",
    "HasASGIRequest",
    "Receive",
    "Scope",
    "Send",
    "StreamingASGIResponse",
    "UploadTimeout",
    "error_response",
    "openapi",
    "parts",
    "parts_from_asgi",
    "send_response",
    "to_asgi",
]

RawHeaders = list[tuple[bytes, bytes]]

logger = logging.getLogger("streamfx.adapters.asgi")


def to_asgi(
    response: StreamResponse, *, write_timeout: float | None = 60.0
) -> StreamingASGIResponse:
    """The ASGI application that sends `response` (see the module docstring).

    The application serves one request: the body can be iterated only once. With
    Starlette installed it is a Starlette ``Response`` (headers added to its
    ``headers`` are sent too, its ``background`` runs after a completed response), so
    a Starlette or FastAPI endpoint returns it as it is, annotated ``-> Response`` or
    ``-> StreamingASGIResponse``.

    `write_timeout`: a client that has not taken a chunk for this many seconds (one
    ``send`` waits that long on the server's flow control) is treated as gone: the body
    is cancelled as on a disconnect. ``None`` waits forever. A `write_timeout` that is
    not a positive number of seconds is a `ValueError`, at once.
    """
    return StreamingASGIResponse(response, write_timeout)


if TYPE_CHECKING:
    from starlette.background import BackgroundTask
    from starlette.responses import Response as _ResponseBase
else:
    try:
        from starlette.responses import Response as _ResponseBase
    except ImportError:  # Starlette is optional: the class is then a plain ASGI app
        _ResponseBase = object


class StreamingASGIResponse(_ResponseBase):
    """An ASGI application sending a `StreamResponse`; what `to_asgi` returns.

    With Starlette installed, a subclass of Starlette's ``Response``: Starlette and
    FastAPI send it as their own (a FastAPI route documents it with
    ``response_class=Response, responses=openapi(...)``), the headers added to
    ``headers`` are sent too and ``background`` runs after a completed response. Its
    status and headers are the `StreamResponse`'s, or those ``for_request`` gives it
    (Range, HEAD, conditional requests) plus the ones added. Without Starlette, the same
    class is a plain ASGI application.
    """

    def __init__(self, response: StreamResponse, write_timeout: float | None = 60.0) -> None:
        # Starlette's Response.__init__ would render a body; only its attributes are set.
        check_write_timeout(write_timeout)
        self.stream_response = response
        self.write_timeout = write_timeout
        self.status_code = response.status
        self.background: BackgroundTask | None = None
        self.body = b""
        # The headers as sent, shared by every response with the same ones (an SSE
        # stream's: one tuple for thousands of idle streams); a list of this response's
        # own is made only when someone asks for `raw_headers` (to add to it).
        self._encoded = _encode_headers(response.headers)
        self._raw_headers: RawHeaders | None = None
        self.completed = False  # set once the whole response was sent

    @property
    def raw_headers(self) -> RawHeaders:
        """The headers to send, as ``(name, value)`` bytes pairs: a list of this
        response's own, which may be changed until the response starts (Starlette's
        ``headers`` and ``set_cookie`` change it)."""
        if self._raw_headers is None:
            self._raw_headers = list(self._encoded)
        return self._raw_headers

    @raw_headers.setter
    def raw_headers(self, value: RawHeaders) -> None:
        self._raw_headers = value

    def _headers_for(self, response: StreamResponse) -> RawHeaders:
        """The start message's headers for `response` (this one's, or the one
        ``for_request`` gave), with those added to `raw_headers`: a fresh list, held
        only by the message (a middleware may change it)."""
        raw = self._raw_headers
        if response is self.stream_response:
            return list(self._encoded if raw is None else raw)
        headers = _encode_headers(response.headers)
        if raw is None:
            return list(headers)
        initial = _encode_headers(self.stream_response.headers)
        return [*headers, *(header for header in raw if header not in initial)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The whole send runs in this one frame: every wait of the body (each event of
        # a live stream) suspends and resumes the chain of frames above it, so a frame
        # less here is less work per chunk. Only what runs once is in helpers.
        response = await _resolve(self.stream_response, scope, send)
        if response is None:
            return
        body = response.body
        start: Message = {
            "type": "http.response.start",
            "status": response.status,
            "headers": self._headers_for(response),
        }
        task = asyncio.current_task()
        assert task is not None, "an ASGI response must be sent from a task"
        watch = DisconnectWatch(task, scope, receive, send)
        watch.start()
        watchdog = WriteWatchdog(self.write_timeout, watch.stalled, logger)
        iterator = body
        try:
            if scope.get("method", "GET") == "HEAD":
                await send(start)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            elif (path := _pathsend_path(response, scope)) is not None:
                await send(start)
                await send({"type": "http.response.pathsend", "path": path})
            else:
                iterator = aiter(body)
                if not await _start(iterator, start, send, watchdog):
                    return
                del start, response  # sent, and `body` is all of it needed from here on
                # The watchdog's methods are looked up per chunk, not bound once: two
                # bound methods would be held for the stream's life (idle memory).
                async for chunk in iterator:
                    if chunk:
                        watchdog.writing()
                        try:
                            await send(
                                {"type": "http.response.body", "body": chunk, "more_body": True}
                            )
                        except OSError:
                            return
                        watchdog.written()
                        del chunk  # sent: not held while the body waits for the next
                watch.closing = True
                try:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except OSError:
                    return
            self.completed = True
        except asyncio.CancelledError:
            if watch.disconnected and task.uncancel() == 0:
                return
            raise
        finally:
            watch.closing = True
            watchdog.stop()
            try:
                await aclose_iterator(iterator)
                if iterator is not body:
                    await aclose_iterator(body)
            finally:
                await watch.stop()
        if self.background is not None:
            await self.background()


async def send_response(
    response: StreamResponse,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    write_timeout: float | None = 60.0,
) -> bool:
    """Send `response` for the HTTP request in `scope`; see the module docstring.

    Returns True when the whole response was sent, False when the client went away
    first or an error before the start was answered with an error status.
    """
    app = StreamingASGIResponse(response, write_timeout)
    await app(scope, receive, send)
    return app.completed


async def _resolve(response: StreamResponse, scope: Scope, send: Send) -> StreamResponse | None:
    """``response.for_request(method, headers)`` (skipped when it would return itself);
    if that raises, the body is closed, the error is answered and None returned."""
    if response.respond_to is None:
        return response
    headers = [
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
    ]
    try:
        return response.for_request(scope.get("method", "GET"), headers)
    except Exception as exc:
        await response.aclose()  # the body never starts; its clean-up still runs
        await _send_error(send, exc)
        return None


def _encode_headers(headers: Sequence[tuple[str, str]]) -> tuple[tuple[bytes, bytes], ...]:
    """`headers` as bytes pairs, in a tuple shared by every response with the same
    headers (cached; headers that cannot be hashed are encoded afresh)."""
    try:
        return _encode_shared(tuple(headers))
    except TypeError:  # a pair given as a list
        return tuple(_encode_header(name, value) for name, value in headers)


@lru_cache(maxsize=256)
def _encode_shared(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(_encode_header(name, value) for name, value in headers)


@lru_cache(maxsize=512)
def _encode_header(name: str, value: str) -> tuple[bytes, bytes]:
    # Cached: the same few headers (an SSE stream's, say) are then shared by every open
    # response instead of being held once per connection.
    return name.lower().encode("latin-1"), value.encode("latin-1")


async def _start(
    iterator: AsyncIterator[bytes], start: Message, send: Send, watchdog: WriteWatchdog
) -> bool:
    """Pull the first chunk, then send the start and that chunk. False when the body
    failed before the start (the error is answered) or the client is gone."""
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        first = b""
    except Exception as exc:  # every error before the start is answered
        await _send_error(send, exc)
        return False
    try:
        await send(start)
        if first:
            watchdog.writing()
            await send({"type": "http.response.body", "body": first, "more_body": True})
            watchdog.written()
    except OSError:
        return False
    return True


def _pathsend_path(response: StreamResponse, scope: Scope) -> str | None:
    """The path to send with ``http.response.pathsend``, if the server offers it and
    the response is a whole file; else None."""
    file = response.file
    if file is None or file.offset != 0:
        return None
    extensions = scope.get("extensions") or {}
    if "http.response.pathsend" not in extensions:
        return None
    try:
        whole = os.stat(file.path).st_size == file.length
    except OSError:
        return None
    return os.fspath(file.path) if whole else None


def error_response(exc: BaseException) -> StreamingASGIResponse:
    """An ASGI application (a Starlette ``Response`` when Starlette is installed)
    answering `exc` as `to_asgi` answers an error raised before the first chunk.

    Meant for errors raised before a response exists: ``download(...)`` refusing a
    path (403/404), an upload refused by its limits (413/415/400/408), an open circuit
    or a closed broadcast hub (503). A `streamfx.errors.StreamfxError` gets its
    ``status_code``, ``headers`` and its ``detail`` as a short ``text/plain`` body; any
    other exception 500 and the status phrase. The exception itself is logged to the
    ``streamfx.adapters.asgi`` logger (a 4xx at INFO, a 5xx at ERROR). A refused upload
    is answered with ``Connection: close`` unless what is left of its body is small
    (see `streamfx.adapters._upload_refusal`). In Starlette or FastAPI, as an exception
    handler: ``exception_handlers={StreamfxError: lambda request, exc:
    error_response(exc)}``.
    """
    answer = answer_error(exc, logger)
    headers = refusal_headers(answer)
    return to_asgi(StreamResponse(answer.status, headers, _once(answer.body)))


async def _once(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk


async def _send_error(send: Send, exc: Exception) -> None:
    """Answer `exc` (raised before the start); a client already gone is not an error."""
    answer = answer_error(exc, logger)
    headers = list(_encode_headers(refusal_headers(answer)))
    start: Message = {"type": "http.response.start", "status": answer.status, "headers": headers}
    try:
        await send(start)
        await send({"type": "http.response.body", "body": answer.body, "more_body": False})
    except OSError:
        pass
