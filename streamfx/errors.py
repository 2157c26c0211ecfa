"""`StreamfxError`: the base of every error streamfx answers over HTTP.

Like Starlette's ``HTTPException`` and aiohttp's ``HTTPException``, an error carries what
an adapter needs to answer it, and nothing else is read from it:

- `status_code`: the HTTP status (an int in 400..599);
- `detail`: a short sentence written for the client. It describes the request (``the
  upload is larger than 1000000 bytes``), never the server: no path, no traceback, no
  internal wording. By default it is the status phrase (``Not Found``). The exception's
  own message (``str(exc)``) is for the server's log and may name server paths;
- `headers`: extra response headers (``Retry-After`` on a 503), names and values
  checked here so that no CR, LF or NUL reaches a response.

Every adapter (`streamfx.adapters.*`) answers a `StreamfxError` raised before a
response starts with `status_code`, `headers` and a short ``text/plain`` body holding
`detail`; any other exception becomes 500 with the status phrase only, its detail
written to the server log. The subclasses: `DownloadError` (403, 404, 500),
`UploadError` (400, 408, 413, 415), `CircuitOpenError` (503 with ``Retry-After``) and
`streamfx.broadcast.BroadcastError` (503).

This module is the bottom layer: every other part of streamfx may import it, and it
imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

__all__ = ["StreamfxError"]

_FORBIDDEN = frozenset("\r\n\0")


class StreamfxError(Exception):
    """An error streamfx answers with `status_code`, `headers` and the client-safe
    `detail` (see the module docstring).

    ``StreamfxError(message, status_code=..., detail=..., headers=...)``: `message` is
    the server-side text (``str(exc)``, logged, never sent); `status_code` defaults to
    the class's; `detail` to the status phrase. `ValueError` for a status outside
    400..599, or a header name or value holding CR, LF or NUL.
    """

    status_code: int = 500

    def __init__(
        self,
        message: str = "",
        *,
        status_code: int | None = None,
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code
        status = self.status_code
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"status_code must be an int in 400..599, got {status!r}")
        self.detail: str = phrase(status) if detail is None else detail
        self.headers: dict[str, str] = dict(headers or {})
        for name, value in self.headers.items():
            if _FORBIDDEN.intersection(name) or _FORBIDDEN.intersection(value):
                raise ValueError(f"header {name!r} holds CR, LF or NUL")


def phrase(status: int) -> str:
    """The reason phrase of `status` (``Not Found`` for 404), ``Error`` for a code Python
    does not know."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
