"""WSGI (PEP 3333): send a `StreamResponse` from Flask or any WSGI server.

`to_wsgi(response)` is a WSGI application. A Flask view may return it as it is (Flask
runs a returned WSGI callable, and keeps our iterable and its ``close()``); any WSGI
router or server can call it. (A Django view must return an ``HttpResponse``, which
this is not: there, route the request to the application beside Django.)

The async body runs on the process's background event loop (`background_loop`: one
daemon thread, started on first use, fork-safe). One task per response iterates the
body; each ``next()`` from the server's thread asks it for a chunk and waits for the
answer, so the body advances only as the server writes (backpressure): at most one
chunk ahead. Chunks that are ready at once leave together, joined into one answer (up
to `COALESCE_BYTES`), so a body that yields many small chunks does not pay a thread
hop per chunk; a lone chunk leaves at once.

What the application does, in order (the adapter promises of `StreamResponse`):

- `response.for_request(method, headers)` with the request's method and headers
  (``HTTP_*`` keys, ``CONTENT_TYPE``, ``CONTENT_LENGTH``);
- HEAD, 1xx, 204 and 304: status and headers only; the body is closed, never iterated;
- when `response.file` is set, its length is the ``Content-Length`` and the server
  offers ``wsgi.file_wrapper``, the file range goes out through it (gunicorn uses
  ``sendfile``; waitress writes from the file in its I/O thread) and the body is
  closed unread;
- otherwise the first body chunk is pulled *before* ``start_response``: an error there
  is answered as every adapter answers it (`streamfx.adapters._common`): a
  `streamfx.errors.StreamfxError` with its ``status_code``, ``headers`` and client-safe
  ``detail`` as a short ``text/plain`` body, anything else with 500 and the status
  phrase; the exception goes to the ``streamfx.adapters.wsgi`` logger only (a 4xx
  at INFO, a 5xx at ERROR), never to the client;
- after ``start_response``, an error from the body is raised from the iterator, which
  makes gunicorn and waitress drop the connection without ending the body cleanly (no
  terminating chunk, or fewer bytes than ``Content-Length``);
- the server calls ``close()`` when it stops iterating for any reason (end, error,
  client gone): the task iterating the body is cancelled and the body closed;
  ``close()`` returns when that is done (at most `CLOSE_TIMEOUT` seconds; then it logs
  and returns, leaving the cleanup running);
- a client that stops reading is treated as gone: when the server has not come back
  for the next chunk `write_timeout` seconds (60 by default) after it took one (its
  write of that chunk is stuck), the body is cancelled and closed at once (its
  finalizers run), and the server's next ``next()`` raises `TimeoutError`, so it drops
  the connection without ending the body (the rule every adapter shares: see
  `streamfx.adapters._common.WriteWatchdog`). Where the client's socket is within
  reach, it is shut down at the same moment, so the server's thread leaves its stuck
  write and is free again, and the server closes the connection and drops what it
  buffered for it: under gunicorn (``environ["gunicorn.socket"]``) and waitress (the
  channel behind ``environ["waitress.client_disconnected"]``, a bound method of it).
  Elsewhere the server's thread stays in its write until the client reads or the
  connection closes: WSGI gives the application no way to abort it (the producer and
  its resources are released all the same).

A WSGI server learns that a client left only when a write fails, so a stream that
writes nothing never notices: keep a heartbeat on long-lived streams. gunicorn's sync
worker serves one request at a time per process and kills a worker whose request lasts
longer than ``--timeout``; use the gthread worker (or waitress) for SSE. The body runs
on the loop's thread, outside the framework's request context (read what it needs from
the request in the view). gevent and eventlet workers are not supported (untested: they
patch the threads the loop runs on).

Uploads: `parts(environ, ...)` feeds ``wsgi.input`` to `streamfx.parse_multipart`
and gives synchronous parts; answer its `UploadError` with `error_response(exc)`.

Hop-by-hop headers (``Connection``, ``Transfer-Encoding``...) are dropped: PEP 3333
forbids them in applications; the server does the framing.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable
from typing import Final
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from streamfx._response.response import StreamResponse
from streamfx.adapters._common import answer_error, check_write_timeout, reason_phrase
from streamfx.adapters._upload_body import UploadTimeout
from streamfx.adapters.wsgi._body import CLOSE_TIMEOUT, COALESCE_BYTES, WSGIBody
from streamfx.adapters.wsgi._file import FileSlice
from streamfx.adapters.wsgi._loop import background_loop
from streamfx.adapters.wsgi._upload import WSGIPart, WSGIParts, parts

__all__ = [
    "CLOSE_TIMEOUT",
    "COALESCE_BYTES",
    "UploadTimeout",
    "WSGIPart",
    "WSGIParts",
    "WSGIStream",
    "background_loop",
    "error_response",
    "parts",
    "request_headers",
    "to_wsgi",
]

_logger = logging.getLogger("streamfx.adapters.wsgi")

_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


def to_wsgi(response: StreamResponse, *, write_timeout: float | None = 60.0) -> WSGIStream:
    """A WSGI application that sends `response` once (see the module docstring).

    `write_timeout`: a client that has not taken a chunk for this many seconds is
    treated as gone (``None`` waits forever); not a positive number: `ValueError`.
    """
    return WSGIStream(response, write_timeout)


def request_headers(environ: WSGIEnvironment) -> list[tuple[str, str]]:
    """The request headers of a WSGI `environ`, names in lower case with dashes."""
    headers: list[tuple[str, str]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").lower(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.append((key.replace("_", "-").lower(), value))
    return headers


def status_line(status: int) -> str:
    """``"200 OK"`` for 200; an unknown code gets an empty reason phrase."""
    return f"{status} {reason_phrase(status)}"


class WSGIStream:
    """The WSGI application returned by `to_wsgi`. It can be called once."""

    __slots__ = ("_lock", "_response", "_write_timeout")

    def __init__(self, response: StreamResponse, write_timeout: float | None = 60.0) -> None:
        check_write_timeout(write_timeout)
        self._response: StreamResponse | None = response
        self._write_timeout = write_timeout
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with self._lock:
            original, self._response = self._response, None
        if original is None:
            raise RuntimeError("this WSGI application was already called: a response is sent once")
        loop = background_loop()
        method = environ.get("REQUEST_METHOD", "GET").upper()
        try:
            response = original.for_request(method, request_headers(environ))
        except Exception as exc:
            WSGIBody(loop, original, self._write_timeout).close()  # never started; closed
            return _error_response(start_response, exc)
        status = status_line(response.status)
        headers = [(k, v) for k, v in response.headers if k.lower() not in _HOP_BY_HOP]
        body = WSGIBody(loop, response, self._write_timeout, _client_socket(environ))

        if method == "HEAD" or response.status in (204, 304) or response.status < 200:
            body.close()
            start_response(status, headers)
            return []

        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None and _fits(response):
            assert response.file is not None
            body.close()
            try:
                slice_ = FileSlice(response.file)
            except Exception as exc:
                return _error_response(start_response, exc)
            start_response(status, headers)
            return wrapper(slice_, 64 * 1024)  # type: ignore[no-any-return]

        try:
            body.pull_first()
        except Exception as exc:
            body.close()
            return _error_response(start_response, exc)
        try:
            start_response(status, headers)
        except BaseException:
            body.close()
            raise
        return body


def error_response(exc: BaseException) -> WSGIApplication:
    """A WSGI application answering `exc` as `to_wsgi` answers an error raised before the
    first chunk: a `streamfx.errors.StreamfxError` (an `UploadError`'s 413/415/400/408,
    a `DownloadError`'s 403/404, a `CircuitOpenError`'s 503 with ``Retry-After``) with
    its ``status_code``, ``headers`` and its ``detail`` as a short ``text/plain`` body;
    any other exception with 500 and the status phrase, never anything else from
    `exc`, which is logged to the ``streamfx.adapters.wsgi`` logger (a 4xx at INFO, a
    5xx at ERROR).

    In Flask: ``app.register_error_handler(StreamfxError, error_response)``.
    """

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return _error_response(start_response, exc)

    return application


def _client_socket(environ: WSGIEnvironment) -> socket.socket | None:
    """The client's socket, where the server lets the application reach it: gunicorn's
    ``environ["gunicorn.socket"]``; waitress's channel, whose method
    ``environ["waitress.client_disconnected"]`` is (the channel keeps the socket as
    ``socket``, as every asyncore dispatcher does). None elsewhere."""
    connection = environ.get("gunicorn.socket")
    if connection is None:
        channel = getattr(environ.get("waitress.client_disconnected"), "__self__", None)
        connection = getattr(channel, "socket", None)
    return connection if isinstance(connection, socket.socket) else None


def _fits(response: StreamResponse) -> bool:
    """True when the response is exactly `response.file`'s range (Content-Length agrees)."""
    file = response.file
    if file is None:
        return False
    length = response.header("content-length")
    return length is not None and length.strip() == str(file.length)


def _error_response(start_response: StartResponse, exc: BaseException) -> list[bytes]:
    answer = answer_error(exc, _logger)
    start_response(status_line(answer.status), answer.headers)
    return [answer.body]
