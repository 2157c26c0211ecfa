"""Errors raised while reading a multipart upload, each with the HTTP status it maps to.

Every error is a `streamfx.errors.StreamfxError`: an adapter answers it with
`status_code` (400 / 413 / 415) and `detail` (a short sentence written for the client:
it names what was wrong and, for a limit, the parameter and its value, such as
``max_file_size=1048576``; it never holds a parser's internal wording, a server path or
a traceback). Here the message is the detail.

Statuses:

- 413 `UploadTooLarge` for every limit, the limits on a part's header lines included.
  431 was considered for those and not chosen: RFC 6585 defines 431 for the request's
  own header fields, and a part's headers are content of the request body, limited like
  the rest of it.
- 415 `UnsupportedMediaType`: the body is not ``multipart/form-data``, a file's declared
  type is not allowed, or the content-sniffing hook refused a file.
- 400 `MalformedUpload`: anything else wrong with the body.
"""

from __future__ import annotations

from streamfx.errors import StreamfxError


class UploadError(StreamfxError):
    """A request body that streamfx refuses to parse.

    `status_code`: the HTTP status to answer with; `detail`: the client-safe reason.
    """

    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail, detail=detail)


class UploadTooLarge(UploadError):
    """A limit was passed: the whole body, a file's or a field's content, the number of
    parts, files or fields, a part's header lines, or the preamble.

    `limit` is the name of the parameter that was passed (``"max_file_size"``) and
    `value` its value, both also in `detail`; they are ``None`` when the error was
    raised without naming one. Raised as soon as the limit is passed, not after the
    body was read to its end.
    """

    status_code = 413

    def __init__(self, detail: str, *, limit: str | None = None, value: int | None = None) -> None:
        super().__init__(detail)
        self.limit = limit
        self.value = value


class UnsupportedMediaType(UploadError):
    """The body is not ``multipart/form-data``, a file part's content type is not one of
    the allowed types, or the content-sniffing hook refused a file's first bytes."""

    status_code = 415


class MalformedUpload(UploadError):
    """The body is not a well-formed ``multipart/form-data`` message: no usable boundary,
    broken framing or part headers, an ambiguous ``Content-Disposition``, or a body that
    ends before the closing boundary."""

    status_code = 400


def shown(text: str, most: int = 60) -> str:
    """`text` quoted for an error message, cut to `most` characters (a client's name
    may be long; the message stays short)."""
    if len(text) > most:
        text = text[: most - 1] + "…"
    return repr(text)
