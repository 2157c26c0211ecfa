"""`download`: a file or a stream of bytes as a `StreamResponse`.

From a **path**, the response is conditional and range-aware (RFC 9110):

- headers: ``Content-Type`` (given, else guessed from `filename` or the path's name,
  else ``application/octet-stream``), ``Content-Length``, ``Accept-Ranges: bytes``, a
  strong ``ETag`` (modification time and size) and ``Last-Modified``, and
  ``Content-Disposition: attachment`` when `filename` is given (any string: one that
  cannot be sent as it is, say a user's name with CR/LF, a U+202E or a ``/``, is
  rewritten by `streamfx._response.disposition.content_disposition`, never refused);
- ``If-Match`` / ``If-Unmodified-Since`` -> 412; ``If-None-Match`` /
  ``If-Modified-Since`` -> 304 (see `streamfx._download.conditional` for the order);
- ``Range`` on GET: one range -> 206 with ``Content-Range``; several -> 206
  ``multipart/byteranges`` with a random boundary (overlapping and adjacent ranges
  are merged, at most 32 are honoured); ``bytes=-N`` and ``bytes=N-``; nothing
  satisfiable -> 416 with ``Content-Range: bytes */SIZE``; a malformed Range, a Range
  sent on more than one line, or one whose ``If-Range`` does not match (or is
  repeated), is ignored (200 with the whole file);
- HEAD: the same status and headers as GET without Range, and no body;
- `file` is set (a `FileRange`) for a full GET and a single-range 206, so that an
  adapter may send it with zero copy.

With `request_headers` None, the response is the one for a request without
conditional or range headers, and carries `respond_to`: adapters call
``response.for_request(method, headers)`` and get the right one, so a route need not
copy request headers. Given `request_headers`, the response answers them directly.
`request_headers` may be any mapping or iterable of ``(name, value)`` pairs, ``str``
or ``bytes``, names in any case: ``request.headers`` from Starlette, aiohttp, Django
or Flask, a ``dict``, or ASGI's ``scope["headers"]``; repeated lines are kept (see
`streamfx._download.conditional` for what a repeated header means). Anything else is
a `TypeError` at the call.

`name` labels the body in metrics: it is reported to the metrics hook as
``("download", name)``, like the `name` of `sse` and `export`.

The path is resolved and measured (``stat``) when `download` is called, synchronously:
headers depend on it, and a missing file is reported at once (`DownloadNotFound`).
The file itself is opened at the first iteration of the body and read in worker
threads (see `streamfx._download.file_body`), 64 KiB per body chunk, through a bounded buffer.

With `root`, the path is taken relative to `root` and must stay inside it once every
``..`` and symlink is resolved: an absolute path, or one that lands outside, raises
`PathOutsideRoot` (403). The check resolves the path and the body opens the resolved
path; someone who can swap a directory inside `root` for a symlink between the two
can still win that race, so `root` guards against hostile request paths, not hostile
writers to the tree.

From an **async iterable** of bytes: 200, ``Content-Length`` when `size` is given (and
then the body raises `DownloadError` if the source yields more or fewer bytes, so the
adapter aborts rather than sending a body that lies about its length), no validators
and no Range support (a Range header is ignored, as RFC 9110 allows; `request_headers`
are checked for their shape and not looked at). HEAD gets the
headers and no body; the source is then closed without being read.

The default buffer is `DOWNLOAD_POLICY`: suspend, 256 chunks. With 64 KiB chunks a
client slower than the disk can leave up to 16 MiB read ahead per download; pass a
smaller `buffer` to hold less. Only ``"suspend"`` is accepted: a download never drops
bytes.
"""

from __future__ import annotations

import mimetypes
import os
import re
import secrets
import stat as stat_module
from collections.abc import AsyncGenerator, AsyncIterable
from pathlib import Path, PurePath

from streamfx._core.buffer import buffer as buffered
from streamfx._core.policy import BufferPolicy
from streamfx._core.util import aclose_iterator
from streamfx._download.conditional import (
    RequestHeaders,
    Validators,
    evaluate_preconditions,
    if_range_allows,
)
from streamfx._download.errors import DownloadError, DownloadNotFound, PathOutsideRoot
from streamfx._download.file_body import read_spans
from streamfx._download.ranges import ByteRange, multipart_byteranges, parse_range
from streamfx._response.disposition import content_disposition
from streamfx._response.response import FileRange, Headers, HeadersInput, StreamResponse
from streamfx.metrics import metered

DOWNLOAD_POLICY = BufferPolicy(256, "suspend")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def download(
    source: str | os.PathLike[str] | AsyncIterable[bytes],
    *,
    filename: str | None = None,
    content_type: str | None = None,
    size: int | None = None,
    root: str | os.PathLike[str] | None = None,
    request_headers: HeadersInput | None = None,
    method: str = "GET",
    buffer: BufferPolicy | None = None,
    name: str = "",
) -> StreamResponse:
    """A download response for `source`, a path or an async iterable of bytes.

    See the module docstring for the headers, statuses and body; `name` labels the
    stream in metrics. Raises at the call: `DownloadNotFound` (no regular file there),
    `PathOutsideRoot` (escapes `root`), `ValueError` for a content type that cannot be
    a header value, a negative `size`, `size` with a path or `root` with an iterable,
    a `buffer` that is not ``"suspend"``; `TypeError` for any other kind of source, a
    `filename` or `name` that is not a ``str``, or `request_headers` that are neither a
    mapping nor ``(name, value)`` pairs. Any ``str`` `filename` is accepted.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    policy = DOWNLOAD_POLICY if buffer is None else buffer
    if policy.strategy != "suspend":
        raise ValueError(
            "a download cannot drop bytes: its buffer strategy must be 'suspend', "
            f"not {policy.strategy!r}"
        )
    disposition = None if filename is None else content_disposition(filename)
    if content_type is not None and not _HEADER_VALUE.fullmatch(content_type):
        raise ValueError(f"content_type must be printable ASCII, got {content_type!r}")
    if isinstance(source, str | os.PathLike):
        if size is not None:
            raise ValueError(
                "size is only for async-iterable sources; a file's size is read from it"
            )
        path = _locate(source, root)
        guessed = content_type or _guess_type(filename or path.name)
        served = _FileDownload(path, _stat_regular(path), guessed, disposition, policy, name)
        if request_headers is not None:
            return served.respond(method, request_headers)
        response = served.respond(method, ())
        response.respond_to = served.respond
        return response
    if not isinstance(source, AsyncIterable):
        raise TypeError(
            f"download() takes a path or an async iterable of bytes, not {type(source).__name__}"
        )
    if root is not None:
        raise ValueError("root is only for path sources")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"size must be a non-negative int, got {size!r}")
    if request_headers is not None:
        RequestHeaders(request_headers)  # checked; a stream does not look at them
    streamed = _StreamDownload(
        source, content_type or _guess_type(filename or ""), disposition, size, policy, name
    )
    response = streamed.respond(method, ())
    response.respond_to = streamed.respond
    return response


def _guess_type(name: str) -> str:
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    return guessed or "application/octet-stream"


def _locate(source: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> Path:
    raw = os.fspath(source)
    if not isinstance(raw, str):
        raise TypeError(f"a path must be a str or os.PathLike[str], not {type(raw).__name__}")
    if "\x00" in raw:
        raise DownloadNotFound(f"no such file: {raw!r} holds a NUL byte")
    if root is None:
        return Path(raw).absolute()
    base = Path(root).resolve()
    if not base.is_dir():
        raise DownloadError(f"download root {os.fspath(root)!r} is not a directory")
    relative = PurePath(raw)
    if relative.is_absolute() or relative.drive or relative.root:
        raise PathOutsideRoot(f"{raw!r} is an absolute path; paths under root must be relative")
    try:
        resolved = (base / relative).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise DownloadNotFound(f"no such file: {raw!r} ({exc})") from exc
    if not resolved.is_relative_to(base):
        raise PathOutsideRoot(f"{raw!r} resolves to {resolved}, outside the root {base}")
    return resolved


def _stat_regular(path: Path) -> os.stat_result:
    try:
        result = path.stat()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise DownloadNotFound(f"no such file: {path}") from exc
    except PermissionError as exc:
        raise DownloadError(f"not allowed to read {path}", status_code=403) from exc
    if not stat_module.S_ISREG(result.st_mode):
        raise DownloadNotFound(f"not a regular file: {path}")
    return result


async def _empty() -> AsyncGenerator[bytes, None]:
    return
    yield  # pragma: no cover - makes this an async generator


class _FileDownload:
    """Everything needed to answer any request for one measured file."""

    __slots__ = ("content_type", "disposition", "name", "path", "policy", "size", "validators")

    def __init__(
        self,
        path: Path,
        stat: os.stat_result,
        content_type: str,
        disposition: str | None,
        policy: BufferPolicy,
        name: str,
    ) -> None:
        self.name = name
        self.path = path
        self.size = stat.st_size
        self.validators = Validators.from_stat(stat)
        self.content_type = content_type
        self.disposition = disposition
        self.policy = policy

    def _body(self, spans: list[bytes | ByteRange]) -> AsyncGenerator[bytes, None]:
        return _delivered(read_spans(self.path, spans), self.policy, self.name)

    def respond(self, method: str, request_headers: HeadersInput) -> StreamResponse:
        """The response to a `method` request with `request_headers`."""
        method = method.upper()
        request = RequestHeaders(request_headers)
        validators: Headers = [
            ("etag", self.validators.etag),
            ("last-modified", self.validators.last_modified),
        ]
        refused = evaluate_preconditions(method, request, self.validators)
        if refused == 304:
            return StreamResponse(304, validators, _empty())
        if refused is not None:
            return StreamResponse(refused, [*validators, ("content-length", "0")], _empty())
        headers: Headers = [("accept-ranges", "bytes"), *validators]
        if self.disposition is not None:
            headers.append(("content-disposition", self.disposition))
        ranges = self._ranges(method, request)
        if ranges is not None and not ranges:
            headers += [("content-range", f"bytes */{self.size}"), ("content-length", "0")]
            return StreamResponse(416, headers, _empty())
        head = method == "HEAD"
        if ranges is None or len(ranges) == 1:
            whole = ranges is None
            part = ByteRange(0, self.size) if ranges is None else ranges[0]
            headers += [("content-type", self.content_type), ("content-length", str(part.length))]
            if not whole:
                headers.append(("content-range", part.content_range(self.size)))
            if head:
                return StreamResponse(200 if whole else 206, headers, _empty())
            return StreamResponse(
                200 if whole else 206,
                headers,
                self._body([part] if part.length else []),
                file=FileRange(self.path, part.start, part.length),
            )
        boundary = secrets.token_hex(16)
        spans, length = multipart_byteranges(ranges, self.size, self.content_type, boundary)
        headers += [
            ("content-type", f"multipart/byteranges; boundary={boundary}"),
            ("content-length", str(length)),
        ]
        return StreamResponse(206, headers, _empty() if head else self._body(spans))

    def _ranges(self, method: str, request: RequestHeaders) -> list[ByteRange] | None:
        """The ranges to send; None for the whole file (see `parse_range`)."""
        value = request.single("range")  # a repeated Range is malformed: ignored
        if method != "GET" or value is None:
            return None
        if request.count("if-range"):
            if_range = request.single("if-range")
            if if_range is None or not if_range_allows(if_range, self.validators):
                return None
        return parse_range(value, self.size)


class _StreamDownload:
    """A download from an async iterable: one 200 response, HEAD-aware."""

    __slots__ = ("headers", "name", "policy", "size", "source")

    def __init__(
        self,
        source: AsyncIterable[bytes],
        content_type: str,
        disposition: str | None,
        size: int | None,
        policy: BufferPolicy,
        name: str,
    ) -> None:
        self.name = name
        self.source = source
        self.size = size
        self.policy = policy
        self.headers: Headers = [("content-type", content_type)]
        if size is not None:
            self.headers.append(("content-length", str(size)))
        if disposition is not None:
            self.headers.append(("content-disposition", disposition))

    def respond(self, method: str, request_headers: HeadersInput) -> StreamResponse:
        """The response to a `method` request (request headers are not looked at)."""
        if method.upper() == "HEAD":
            return StreamResponse(200, list(self.headers), _closing(self.source))
        body = _delivered(_exactly(self.source, self.size), self.policy, self.name)
        return StreamResponse(200, list(self.headers), body)


def _delivered(
    chunks: AsyncIterable[bytes], policy: BufferPolicy, name: str
) -> AsyncGenerator[bytes, None]:
    """Every download's body: `chunks` read ahead through a bounded buffer of `policy`
    (``"suspend"``: a slow client slows the reading), reported to the metrics hook as
    ``("download", name)``."""
    body = buffered(chunks, policy.capacity, policy.strategy, stall_after=policy.stall_after)
    return metered(body, "download", name)


async def _closing(source: AsyncIterable[bytes]) -> AsyncGenerator[bytes, None]:
    """No bytes; closes `source` (unread) when iterated."""
    await aclose_iterator(source)
    return
    yield  # pragma: no cover - makes this an async generator


async def _exactly(source: AsyncIterable[bytes], size: int | None) -> AsyncGenerator[bytes, None]:
    """`source` as ``bytes``, checked against the promised `size` (when not None)."""
    sent = 0
    iterator = aiter(source)
    try:
        async for chunk in iterator:
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(f"a download source must yield bytes, not {type(chunk).__name__}")
            data = bytes(chunk)
            sent += len(data)
            if size is not None and sent > size:
                raise DownloadError(f"the source yielded more than the {size} bytes promised")
            yield data
        if size is not None and sent < size:
            raise DownloadError(f"the source ended after {sent} of the {size} bytes promised")
    finally:
        await aclose_iterator(iterator)
