"""`to_quart`: send a `StreamResponse` from a Quart view.

A Quart view cannot return an ASGI application, and Quart sends the status line
before it iterates a response body, so ``await to_quart(response)`` does the part that
must come first inside the view and returns a Quart ``Response``::

    @app.get("/events")
    async def events():
        return await to_quart(sse(source()))

What it promises (the same as `streamfx.adapters.asgi.to_asgi` where Quart allows):

- ``response.for_request(method, headers)`` is called with the current request's
  method and headers, so a download honours Range and conditional requests; ``HEAD``
  gets the status and headers only (the body is closed without being iterated).
- The first body chunk is pulled before ``to_quart`` returns. An error from
  ``for_request`` or from that chunk is answered as every adapter answers it
  (`streamfx.adapters._common`): a `streamfx.errors.StreamfxError` with its
  ``status_code``, ``headers`` and client-safe ``detail`` as a short ``text/plain``
  body, anything else with 500 and the status phrase; the exception is logged to the
  ``streamfx.adapters.quart`` logger only (a 4xx at INFO, a 5xx at ERROR).
  `error_response(exc)` answers an error raised before any response exists
  (``download()`` refusing a path) the same way.
- After the start, an error from the body propagates out of Quart's ASGI application,
  so the server aborts the connection without the final chunk of a chunked body: a
  truncated body never looks complete.
- A client that goes away: Quart's own listener sees ``http.disconnect`` and cancels
  the task sending the response; the body is closed (``aclose()``, once) as Quart
  leaves the body, so every finalizer has run. No task of streamfx's is left.
- The response has ``timeout = None``: Quart's ``RESPONSE_TIMEOUT`` (60 s by default)
  would otherwise cut every longer stream. Set ``response.timeout`` to a number to
  restore a limit.
- A client that stops reading is treated as gone: when one chunk has waited
  `write_timeout` seconds (60 by default) on the server's flow control, the task
  sending the response is cancelled as on a disconnect; the server then closes the
  connection without the end of the body (the rule every adapter shares: see
  `streamfx.adapters._common.WriteWatchdog`).
- The streamfx headers are sent as they are; Quart's default ``Content-Type`` is not
  added when the response has none (a 304, say).

Uploads: ``parts(request, ...)`` feeds ``request.body`` to `streamfx.parse_multipart`
with every adapter's limits, declared-length check and read rule; what Quart itself
does with the body (it reads ahead of the view, bounded by ``MAX_CONTENT_LENGTH``, and
cancels the view when the client leaves) is in `streamfx.adapters._quart_upload`.

What does not hold, because Quart owns the sending:

- No zero-copy ``pathsend``: downloads are sent by chunked reads.
- If Quart is cancelled between the view's return and its first read of the body (a
  client leaving while ``http.response.start`` is being sent), Quart never enters the
  body and so never closes it, and Quart offers no hook to do it. A body that is an
  async generator (every streamfx builder's is) is then closed by asyncio's async
  generator finalizer when the dropped response is collected; any other body is not
  closed. (Django has ``close()`` for this; Quart has nothing like it.)
- Quart applies ``after_request`` functions and its response handling as usual; a
  function that replaces the body (compression, say) takes over closing it.
"""

from __future__ import annotations

import logging

from quart import Response, request
from werkzeug.datastructures import Headers

from streamfx._response.response import StreamResponse
from streamfx.adapters._common import answer_error, check_write_timeout
from streamfx.adapters._prefetch import prefetch
from streamfx.adapters._quart_upload import parts
from streamfx.adapters._upload_body import UploadTimeout
from streamfx.adapters._upload_refusal import refusal_headers

__all__ = ["UploadTimeout", "error_response", "parts", "to_quart"]

logger = logging.getLogger("streamfx.adapters.quart")


async def to_quart(response: StreamResponse, *, write_timeout: float | None = 60.0) -> Response:
    """A Quart ``Response`` sending `response` for the current request (see the module
    docstring). Await it inside a Quart view (a request context is needed).

    `write_timeout`: a client that has not taken a chunk for this many seconds is
    treated as gone (``None`` waits forever); not a positive number: `ValueError`.
    """
    check_write_timeout(write_timeout)
    method = request.method
    headers = list(request.headers.items())
    ready = await prefetch(response, method, headers, logger, write_timeout=write_timeout)
    reply = Response(ready.body, status=ready.status, headers=Headers(ready.headers))
    if not any(name.lower() == "content-type" for name, _ in ready.headers):
        del reply.headers["content-type"]
    reply.timeout = None
    return reply


def error_response(exc: BaseException) -> Response:
    """A Quart ``Response`` answering `exc` as `to_quart` answers an error raised before
    the first chunk: a `streamfx.errors.StreamfxError` with its ``status_code``,
    ``headers`` and its ``detail`` as a short ``text/plain`` body; anything else with 500
    and the status phrase. The exception is logged to the ``streamfx.adapters.quart``
    logger only.

    For errors raised before a response exists: ``download()`` refusing a path (403,
    404), an upload refused by its limits (`parts`: 413/415/400/408; with
    ``Connection: close`` when much of the body is left), an open circuit (503). In a
    Quart app: ``app.register_error_handler(StreamfxError, error_response)``.
    """
    answer = answer_error(exc, logger)
    headers = Headers(refusal_headers(answer))
    reply = Response(answer.body, status=answer.status, headers=headers)
    reply.timeout = None
    return reply
