"""`to_litestar`: a `StreamResponse` as a Litestar response.

A Litestar handler returns a Litestar ``Response``; Litestar asks it for the ASGI
application that sends it (``to_asgi_response``). ``to_litestar(response)`` is such a
``Response`` (`StreamingLitestarResponse`), so a handler is annotated the natural way
and Litestar neither serializes it (the ``SerializationException: Unsupported type``
a bare ASGI callable gets) nor needs a cast::

    @get("/events", media_type="text/event-stream")
    async def events() -> StreamingLitestarResponse:
        return to_litestar(sse(feed()))

The ASGI application it hands Litestar sends the response exactly as
`streamfx.adapters.asgi.send_response` does (the same code): ``for_request`` first
(Range, conditional requests, HEAD: headers only), the first chunk pulled before the
status line (an early error becomes its status with a short plain-text body), a later
error aborts the connection, a disconnect or the write timeout cancels the body, the
body is closed exactly once. On top of that, the Litestar parts of a response: headers
set on it (``set_header``) or on the route (``response_headers``) and its cookies are
sent too (after the `StreamResponse`'s own); its background task (or the route's) runs
after a response sent in full. The route's ``status_code`` and ``media_type`` are not
used: the status and ``Content-Type`` are the `StreamResponse`'s (``media_type=`` on the
route documents the stream in Litestar's OpenAPI schema).

HEAD: Litestar's ``@get`` does not answer HEAD, and ``@head`` handlers may not return
a body; serve a download with ``@route(path, http_method=["GET", "HEAD"])``.

Errors raised before a response exists (``download()`` refusing a path, an upload
refused by its limits) are answered with ``error_response(exc)``, the same answer
every adapter gives. Uploads: ``parts(request, ...)`` feeds the request body to
`streamfx.parse_multipart` (Litestar must not have read the body: no ``data`` or
``body`` parameter on the handler).

Hand-written: Litestar's own ``Stream`` response knows nothing of Range, HEAD,
the first chunk or closing the body; this module only joins Litestar's response to
streamfx's ASGI sending.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Unpack, cast

from litestar import Request, Response
from litestar.response.base import ASGIResponse

from streamfx._response.response import StreamResponse
from streamfx._upload.multipart import PartStream
from streamfx.adapters._asgi_upload import parts_from_asgi
from streamfx.adapters._common import answer_error, check_write_timeout
from streamfx.adapters._upload_body import MIN_RATE, READ_TIMEOUT, UploadOptions
from streamfx.adapters._upload_refusal import refusal_headers
from streamfx.adapters.asgi import send_response

if TYPE_CHECKING:
    from litestar.app import Litestar
    from litestar.background_tasks import BackgroundTask, BackgroundTasks
    from litestar.datastructures import Cookie
    from litestar.enums import MediaType
    from litestar.types import Receive, Scope, Send, TypeEncodersMap

__all__ = ["StreamingLitestarResponse", "error_response", "parts", "to_litestar"]

logger = logging.getLogger("streamfx.adapters.litestar")

Headers = list[tuple[str, str]]


def to_litestar(
    response: StreamResponse, *, write_timeout: float | None = 60.0
) -> StreamingLitestarResponse:
    """A Litestar ``Response`` that sends `response` (see the module docstring).

    It serves one request: the body can be iterated only once. `write_timeout`: as in
    every adapter, a client that has not taken a chunk for this many seconds is
    treated as gone (None: wait forever); not a positive number of seconds: a
    `ValueError`, at once.
    """
    return StreamingLitestarResponse(response, write_timeout=write_timeout)


class StreamingLitestarResponse(Response[StreamResponse]):
    """A Litestar ``Response`` whose content is a `StreamResponse`; what `to_litestar`
    returns. Its status is the `StreamResponse`'s; ``set_header``, ``set_cookie`` and
    ``background`` work as on any Litestar response."""

    def __init__(
        self,
        content: StreamResponse,
        *,
        write_timeout: float | None = 60.0,
        background: BackgroundTask | BackgroundTasks | None = None,
    ) -> None:
        if not isinstance(content, StreamResponse):
            raise TypeError(f"to_litestar() takes a StreamResponse, not {type(content).__name__}")
        check_write_timeout(write_timeout)
        super().__init__(content, status_code=content.status, background=background)
        self.write_timeout = write_timeout

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        """The ASGI application Litestar calls to send this response (see the module
        docstring for what it takes from the arguments and what it ignores)."""
        added: Headers = [(name, str(value)) for name, value in (headers or {}).items()]
        added += [(name, str(value)) for name, value in self.headers.items()]
        added += [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in encoded_headers or ()
        ]
        for cookie in [*self.cookies, *(cookies or ())]:
            if not cookie.documentation_only:
                name, value = cookie.to_encoded_header()
                added.append((name.decode("latin-1"), value.decode("latin-1")))
        return _StreamSender(
            _with_headers(self.content, added), self.background or background, self.write_timeout
        )


class _StreamSender(ASGIResponse):
    """The ASGI application for one `StreamingLitestarResponse`.

    A Litestar ``ASGIResponse`` by type (what ``to_asgi_response`` must return), but its
    sending is `send_response`'s: ``ASGIResponse.__init__`` (a body rendered up front, a
    ``Content-Length`` and a JSON content type by default) is not called, and only the
    attributes Litestar reads are set."""

    def __init__(
        self,
        response: StreamResponse,
        background: BackgroundTask | BackgroundTasks | None,
        write_timeout: float | None,
    ) -> None:
        self.response = response
        self.background = background
        self.write_timeout = write_timeout
        self.status_code = response.status
        self.is_head_response = False
        self.body = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        completed = await send_response(
            self.response,
            cast(Any, scope),
            cast(Any, receive),
            cast(Any, send),
            write_timeout=self.write_timeout,
        )
        if completed and self.background is not None:
            await self.background()


def _with_headers(response: StreamResponse, added: Headers) -> StreamResponse:
    """`response` with `added` headers after its own, also on whatever its
    ``for_request`` gives (a 206, a 304, a 416)."""
    if not added:
        return response
    respond_to = None
    if response.respond_to is not None:
        original = response

        def respond_to(method: str, headers: Any) -> StreamResponse:
            return _with_headers(original.for_request(method, headers), added)

    return StreamResponse(
        response.status, [*response.headers, *added], response.body, response.file, respond_to
    )


def error_response(exc: BaseException) -> StreamingLitestarResponse:
    """A Litestar response answering `exc` as every adapter does: a `StreamfxError`
    with its ``status_code``, ``headers`` (``Retry-After`` on a 503 from an open
    circuit) and client-safe ``detail`` as a short ``text/plain`` body; anything else
    with 500 and the status phrase. The exception itself is logged to the
    ``streamfx.adapters.litestar`` logger (a 4xx at INFO, a 5xx at ERROR). A refused
    upload is answered with ``Connection: close`` unless what is left of its body is
    small (see `streamfx.adapters._upload_refusal`).

    Meant for errors raised before a response exists (``download()``'s 403/404, an
    upload's 413/415/400/408); also as a Litestar exception handler:
    ``exception_handlers={StreamfxError: lambda request, exc: error_response(exc)}``.
    """
    answer = answer_error(exc, logger)
    body = StreamResponse(answer.status, refusal_headers(answer), _once(answer.body))
    return StreamingLitestarResponse(body)


async def _once(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk


def parts(
    request: Request[Any, Any, Any],
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    read_timeout: float | None = READ_TIMEOUT,
    min_rate: int | None = MIN_RATE,
    **options: Unpack[UploadOptions],
) -> PartStream:
    """The parts of a Litestar request's ``multipart/form-data`` body, read as they are
    consumed, with limits: `streamfx.adapters.asgi.parts_from_asgi` on the request's
    scope and receive (the same limits, errors and promises). Answer its `UploadError`
    with `error_response`."""
    return parts_from_asgi(
        cast(Any, request.scope),
        cast(Any, request.receive),
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        read_timeout=read_timeout,
        min_rate=min_rate,
        **options,
    )
