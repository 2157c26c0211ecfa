"""WSGI (PEP 3333): send a `StreamResponse` from Flask, Django or any WSGI server.

`to_wsgi(response)` is a WSGI application. A Flask view may return it as it is (Flask
runs a returned WSGI callable); any WSGI router or server can call it. The async body
runs on the process's background event loop (`background_loop`, one daemon thread,
fork-safe); the server's thread pulls one chunk at a time through
`asyncio.run_coroutine_threadsafe`, so the body advances only as fast as the server
writes (backpressure). Chunks are not re-batched here: bodies built by streamfx already
hand over every ready item as one chunk.

What the application does, in order (the adapter promises of `StreamResponse`):

- `response.for_request(method, headers)` with the request's method and headers
  (``HTTP_*`` keys, ``CONTENT_TYPE``, ``CONTENT_LENGTH``);
- HEAD, 1xx, 204 and 304: status and headers only; the body is closed, never iterated;
- when `response.file` is set, its length is the ``Content-Length`` and the server
  offers ``wsgi.file_wrapper``, the file range goes out through it (gunicorn uses
  ``sendfile``; waitress writes from the file in its I/O thread) and the body is
  closed unread;
- otherwise the first body chunk is pulled *before* ``start_response``: an error there
  becomes a short ``text/plain`` response with the error's ``status`` (a 4xx also shows
  the error's message) or 500;
- after ``start_response``, an error from the body is raised from the iterator, which
  makes gunicorn and waitress drop the connection without ending the body cleanly (no
  terminating chunk, or fewer bytes than ``Content-Length``);
- the server calls ``close()`` when it stops iterating for any reason (end, error,
  client gone): the pull in progress is cancelled and the body closed on the loop;
  ``close()`` returns when that is done (at most `CLOSE_TIMEOUT` seconds; then it logs
  and returns, leaving the cleanup running).

A WSGI server learns that a client left only when a write fails, so a stream that
writes nothing never notices: keep a heartbeat on long-lived streams. gunicorn's sync
worker serves one request at a time per process and kills a worker whose request lasts
longer than ``--timeout``; use the gthread worker (or waitress) for SSE.

Uploads: `parts_from_wsgi(environ, ...)` feeds ``wsgi.input`` to `streamfx.parse_multipart`
and gives synchronous parts; answer its `UploadError` with `error_response(exc)`.

Hop-by-hop headers (``Connection``, ``Transfer-Encoding``...) are dropped: PEP 3333
forbids them in applications; the server does the framing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import Future
from http import HTTPStatus
from typing import Any, Final
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from .._response import FileRange, StreamResponse
from ._wsgi_loop import background_loop
from ._wsgi_upload import WSGIPart, WSGIParts, parts_from_wsgi

__all__ = [
    "CLOSE_TIMEOUT",
    "WSGIPart",
    "WSGIParts",
    "WSGIStream",
    "background_loop",
    "error_response",
    "parts_from_wsgi",
    "request_headers",
    "to_wsgi",
]

CLOSE_TIMEOUT: Final = 5.0
"""Seconds ``close()`` waits for the body's cleanup before giving up (and logging)."""

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


def to_wsgi(response: StreamResponse) -> WSGIStream:
    """A WSGI application that sends `response` once (see the module docstring)."""
    return WSGIStream(response)


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
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} "


class WSGIStream:
    """The WSGI application returned by `to_wsgi`. It can be called once."""

    __slots__ = ("_lock", "_response")

    def __init__(self, response: StreamResponse) -> None:
        self._response: StreamResponse | None = response
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
            return _error_response(start_response, exc)
        status = status_line(response.status)
        headers = [(k, v) for k, v in response.headers if k.lower() not in _HOP_BY_HOP]
        body = _Body(loop, response)

        if method == "HEAD" or response.status in (204, 304) or response.status < 200:
            body.close()
            start_response(status, headers)
            return []

        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None and _fits(response):
            assert response.file is not None
            body.close()
            try:
                slice_ = _FileSlice(response.file)
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


def error_response(exc: Exception) -> WSGIApplication:
    """A WSGI application answering `exc` as `to_wsgi` answers an error raised before the
    first chunk: the error's ``status`` (an `UploadError`'s 413/415/400, a
    `DownloadError`'s 403/404...) or 500, with a short ``text/plain`` body that is the
    error's message for a 4xx and only the reason phrase otherwise.

    In Flask: ``app.register_error_handler(UploadError, error_response)``.
    """

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return _error_response(start_response, exc)

    return application


def _fits(response: StreamResponse) -> bool:
    """True when the response is exactly `response.file`'s range (Content-Length agrees)."""
    file = response.file
    if file is None:
        return False
    length = response.header("content-length")
    return length is not None and length.strip() == str(file.length)


def _error_response(start_response: StartResponse, exc: Exception) -> list[bytes]:
    status = getattr(exc, "status", None)
    if not isinstance(status, int) or not 400 <= status <= 599:
        status = 500
    if status >= 500:
        _logger.error("stream failed before the response started", exc_info=exc)
        text = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    else:
        text = str(exc) or HTTPStatus(status).phrase
    payload = (" ".join(text.split())[:300] + "\n").encode("utf-8", "replace")
    start_response(
        status_line(status),
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(payload))),
        ],
    )
    return [payload]


class _FileSlice:
    """A read-only file limited to one byte range, for ``wsgi.file_wrapper``.

    It is unbuffered, so the descriptor's position is ``tell()`` (gunicorn's sendfile
    reads it from the descriptor); ``read`` and ``seek`` never go past the range, so a
    wrapper that is iterated instead (as when Flask wraps the application) reads only
    the range too.
    """

    def __init__(self, file: FileRange) -> None:
        self._raw = open(file.path, "rb", buffering=0)  # noqa: SIM115 - closed by the server
        self._start = file.offset
        self._end = file.offset + file.length
        self._raw.seek(self._start)

    def fileno(self) -> int:
        return self._raw.fileno()

    def read(self, size: int = -1) -> bytes:
        left = self._end - self._raw.tell()
        if left <= 0:
            return b""
        if size < 0 or size > left:
            size = left
        return self._raw.read(size) or b""

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            target = offset
        elif whence == 1:
            target = self._raw.tell() + offset
        else:
            target = self._end + offset
        return self._raw.seek(min(max(target, self._start), self._end))

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._raw.close()


class _Body(Iterator[bytes]):
    """The WSGI iterable: pulls the async body on the loop, one chunk per ``next()``."""

    __slots__ = ("_closed", "_done", "_first", "_iterator", "_loop", "_pulling", "_response")

    def __init__(self, loop: asyncio.AbstractEventLoop, response: StreamResponse) -> None:
        self._loop = loop
        self._response = response
        self._iterator: AsyncIterator[bytes] | None = None
        self._pulling: asyncio.Task[Any] | None = None
        self._first: bytes | None = None
        self._done = False
        self._closed = False

    def pull_first(self) -> None:
        """Pull the first chunk now (before the status line goes out); raise its error."""
        self._first = self._pull_now()

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        first = self._first
        if first is not None:
            self._first = None
            return first
        chunk = self._pull_now()
        if chunk is None:
            raise StopIteration
        return chunk

    def _pull_now(self) -> bytes | None:
        if self._done or self._closed:
            return None
        future: Future[bytes | None] = asyncio.run_coroutine_threadsafe(self._pull(), self._loop)
        try:
            chunk = future.result()
        except BaseException:
            self._done = True
            future.cancel()
            raise
        if chunk is None:
            self._done = True
        return chunk

    async def _pull(self) -> bytes | None:
        self._pulling = asyncio.current_task()
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = aiter(self._response.body)
        while True:
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return None
            if chunk:
                return chunk

    def close(self) -> None:
        """Cancel the pull in progress, close the body; wait at most `CLOSE_TIMEOUT`."""
        if self._closed:
            return
        self._closed = True
        self._first = None
        future = asyncio.run_coroutine_threadsafe(self._aclose(), self._loop)
        try:
            future.result(timeout=CLOSE_TIMEOUT)
        except TimeoutError:
            _logger.warning("stream cleanup still running after %s s", CLOSE_TIMEOUT)
        except Exception:
            _logger.exception("stream cleanup failed")

    async def _aclose(self) -> None:
        pulling = self._pulling
        if pulling is not None and not pulling.done():
            pulling.cancel()
            await asyncio.wait([pulling])
        iterator = self._iterator
        if iterator is not None and iterator is not self._response.body:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        await self._response.aclose()
