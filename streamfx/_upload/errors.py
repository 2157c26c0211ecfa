"""Errors raised while reading a multipart upload, each with the HTTP status it maps to.

Adapters answer an `UploadError` with its `status` and its message; nothing else in the
message is needed to tell the client what went wrong.
"""

from __future__ import annotations


class UploadError(Exception):
    """A request body that streamfx refuses to parse. `status` is the HTTP status."""

    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UploadTooLarge(UploadError):
    """A limit was passed: the whole body, one part's content, or the number of parts.

    Raised as soon as the limit is passed, not after the body was read to its end.
    """

    status = 413


class UnsupportedMediaType(UploadError):
    """The body is not ``multipart/form-data``, or a file part's content type is not one
    of the allowed types."""

    status = 415


class MalformedUpload(UploadError):
    """The body is not a well-formed ``multipart/form-data`` message: no boundary,
    broken framing or part headers, or a body that ends before the closing boundary."""

    status = 400
