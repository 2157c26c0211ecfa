"""How adapters answer an error raised before a response starts (framework-neutral).

Shared by every adapter: the status an exception maps to, the short plain-text body
shown to the client, and the headers of that body.
"""

from __future__ import annotations

from http import HTTPStatus

from streamfx._upload.errors import UploadError


def error_status(exc: BaseException) -> int:
    """The HTTP status for `exc`: its ``status`` attribute when that is an int in
    400..599, else 500."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
        return status
    return 500


def error_text(exc: BaseException, status: int) -> bytes:
    """The short plain-text body for `exc`: an `UploadError`'s message (written for the
    client), otherwise only the status phrase (messages of other errors may hold server
    paths or internals)."""
    if isinstance(exc, UploadError):
        return exc.message.encode("utf-8", "replace")
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Error"


def error_headers(text: bytes) -> list[tuple[str, str]]:
    """``Content-Type`` and ``Content-Length`` of an error body `text`."""
    return [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(text))),
    ]
