"""`to_django`: send a `StreamResponse` from a Django view under Django's ASGI handler.

A Django view must return an ``HttpResponse``, and Django sends the status line before
it iterates a streaming body, so ``await to_django(request, response)`` does the part
that must come first inside the (async) view and returns a ``StreamingHttpResponse``
subclass whose body is the streamfx body::

    async def events(request):
        return await to_django(request, sse(source()))

Django 5.0 or later, served by ``get_asgi_application()`` under an ASGI server (tested
with uvicorn and hypercorn). What it promises (the same as `streamfx.adapters.asgi.to_asgi` where
Django allows):

- Before ``to_django`` returns, ``response.for_request(method, headers)`` runs with the
  request's method and headers (a download honours Range and conditional requests)
  and the first body chunk is pulled; ``HEAD`` gets the status and headers only, the
  body closed without being iterated. An error in either step is answered as every
  adapter answers it (`streamfx.adapters._common`): a `streamfx.errors.StreamfxError`
  with its ``status_code``, ``headers`` and client-safe ``detail`` as a short
  ``text/plain`` body, anything else with 500 and the status phrase; the exception is
  logged to ``streamfx.adapters.django`` only (a 4xx at INFO, a 5xx at ERROR);
  `error_response(exc)` answers an error raised before any response exists
  (``download()`` refusing a path) the same way.
- After the start, an error from the body propagates out of Django's ASGI handler
  (Django re-raises it), so the server aborts the connection without the final chunk
  of a chunked body: a truncated body never looks complete. A body that ends short
  of its ``Content-Length`` is such an error (``RuntimeError``), raised before Django
  sends the end of the body. Before an error goes on (the body's, or the server's
  from a send), the response is closed as Django closes a response that ended
  (``close()``: the request, with the file Django read its body into, and
  ``request_finished``), which Django's handler skips for a response that failed.
- A client that goes away: Django (5.0+) listens for ``http.disconnect`` and cancels
  the task sending the response; the body is closed (``aclose()``, once) as Django
  leaves it, so every finalizer has run.
- A client that stops reading is treated as gone: when one chunk has waited
  `write_timeout` seconds (60 by default) on the server's flow control, the task
  sending the response is cancelled as on a disconnect; the server then closes the
  connection without the end of the body (the rule every adapter shares: see
  `streamfx.adapters._common.WriteWatchdog`).
- ``close()`` (which Django calls after a response) closes the body too if nothing
  else did: a body that Django never iterated (middleware that dropped it, a client
  that left during ``http.response.start``) is still closed, once.
- The streamfx headers are sent as they are; Django's default ``Content-Type`` is not
  added when the response has none (a 304, say). Django keeps one value per header
  name: a response with a repeated header keeps the last one.

Uploads: ``parts(request, ...)`` feeds the request body to `streamfx.parse_multipart`
with every adapter's limits (and the ``Content-Length`` over ``max_size`` refused
before a byte is parsed); answer its `UploadError` with ``error_response(exc)``.
But Django's ASGI handler reads the *whole* request body (into a temporary file that
moves to disk past ``FILE_UPLOAD_MAX_MEMORY_SIZE``) before it calls any view, so by
then the client has sent all of it: a 200 MB upload over the limit is received in
full before the 413, and a client that stalls or trickles holds the request before
the view runs (Django has no body timeout, so ``read_timeout`` and ``min_rate`` are not
arguments here: use the server's timeouts). The parsing, the limits and the
memory bound still hold. To refuse an upload while it arrives, serve that endpoint
beside Django with the ASGI adapter (``streamfx.adapters.asgi.parts_from_asgi``, see
the README): it reads the body only as the parts are consumed, with the read rule.

What does not hold, because Django owns the sending:

- No zero-copy ``pathsend``: downloads are sent by chunked reads (Django's handler
  sends only ``http.response.body`` messages).
- Under WSGI, Django would collect the whole async body in memory before sending
  it (with a warning): use `streamfx.adapters.wsgi.to_wsgi` there instead.
- Middleware that wraps ``streaming_content`` (``GZipMiddleware``, say) iterates
  the body itself; the body is then closed by ``close()`` at the end rather than as
  soon as the client leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Final, Unpack

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from streamfx._response.response import StreamResponse
from streamfx._upload.stream import PartStream
from streamfx.adapters._common import answer_error, check_write_timeout
from streamfx.adapters._prefetch import Prefetched, ResumedBody, prefetch
from streamfx.adapters._upload_body import UploadOptions, content_length, parse_upload

__all__ = ["StreamfxHttpResponse", "error_response", "parts", "to_django"]

READ_SIZE: Final = 1 << 20
"""The most bytes of the (already received) request body read at once by `parts`."""

logger = logging.getLogger("streamfx.adapters.django")

_closing: set[asyncio.Task[None]] = set()


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def to_django(
    request: HttpRequest, response: StreamResponse, *, write_timeout: float | None = 60.0
) -> StreamfxHttpResponse:
    """A Django response sending `response` for `request` (see the module docstring).
    Await it inside an async view.

    `write_timeout`: a client that has not taken a chunk for this many seconds is
    treated as gone (``None`` waits forever); not a positive number: `ValueError`.
    """
    check_write_timeout(write_timeout)
    method = request.method or "GET"
    headers = list(request.headers.items())
    ready = await prefetch(response, method, headers, logger, write_timeout=write_timeout)
    return StreamfxHttpResponse(ready)


def error_response(exc: BaseException) -> HttpResponse:
    """A Django ``HttpResponse`` answering `exc` as `to_django` answers an error raised
    before the first chunk: a `streamfx.errors.StreamfxError` with its ``status_code``,
    ``headers`` and its ``detail`` as a short ``text/plain`` body; anything else with
    500 and the status phrase. The exception is logged to the
    ``streamfx.adapters.django`` logger only.

    For errors raised before a response exists: ``download()`` refusing a path (403,
    404), an upload refused by its limits, an open circuit (503). In a view:
    ``except StreamfxError as exc: return error_response(exc)``.
    """
    answer = answer_error(exc, logger)
    reply = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        reply.headers[name] = value
    return reply


def parts(
    request: HttpRequest,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    **options: Unpack[UploadOptions],
) -> PartStream:
    """The parts of `request`'s ``multipart/form-data`` body, parsed as the async view
    asks for them (``request.POST`` and ``request.FILES`` must not have been read).

        async with parts(request, max_size=..., max_part_size=..., max_parts=...) as stream:
            async for part in stream:
                async for chunk in part: ...

    The limits, and every other keyword argument (`UploadOptions`: ``max_file_size``,
    ``allowed_types``, ``sniff``...), are `streamfx.parse_multipart`'s. Raised at once:
    `UploadTooLarge` when ``Content-Length`` passes `max_size` (nothing is parsed),
    `UnsupportedMediaType` / `MalformedUpload` for a request that is not multipart or
    has no boundary. While iterating: `UploadTooLarge` (413), `UnsupportedMediaType`
    (415), `MalformedUpload` (400). Answer any of them with ``error_response(exc)``.
    The body is read in worker threads, `READ_SIZE` bytes at a time (Django holds it
    in a file). Django's handler has received the whole body before the view runs:
    see the module docstring for what that costs, and the streaming way.
    """
    meta = request.META
    return parse_upload(
        _request_body(request),
        meta.get("CONTENT_TYPE"),
        content_length(meta.get("CONTENT_LENGTH")),
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        **options,
    )


async def _request_body(request: HttpRequest) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(request.read, READ_SIZE):
        yield chunk


class StreamfxHttpResponse(StreamingHttpResponse):
    """A ``StreamingHttpResponse`` over a prefetched streamfx body (made by `to_django`)."""

    def __init__(self, ready: Prefetched) -> None:
        super().__init__(ready.body, status=ready.status)
        self.stream_body: ResumedBody = ready.body
        typed = False
        for name, value in ready.headers:
            self.headers[name] = value
            typed = typed or name.lower() == "content-type"
        if not typed:
            del self.headers["Content-Type"]

    def __aiter__(self) -> AsyncGenerator[bytes]:
        # Django's own __aiter__ wraps the body in generators that never close it;
        # this one closes it, and Django's aclosing() closes this one.
        return self._sent_body()

    async def _sent_body(self) -> AsyncGenerator[bytes]:
        body = self.stream_body
        declared = None if body.closed else content_length(self.headers.get("Content-Length"))
        sent = 0
        complete = False
        try:
            async for chunk in body:
                sent += len(chunk)
                yield chunk
            if declared is not None and sent < declared:
                short = declared - sent
                raise RuntimeError(f"body ended {short} bytes short of its Content-Length")
            complete = True
        finally:
            await body.aclose()
            if not complete and not _being_cancelled():
                # Django's handler re-raises an error (the body's, or the server's from
                # a send) without closing the response: closed here as Django closes
                # one that ended. On cancellation Django finishes the request itself.
                await sync_to_async(self.close)()

    def close(self) -> None:
        super().close()
        body = self.stream_body
        if body.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a worker thread (Django calls close via sync_to_async)
            async_to_sync(body.aclose)()
            return
        task = loop.create_task(body.aclose(), name="streamfx.django close")
        _closing.add(task)
        task.add_done_callback(_closing.discard)
