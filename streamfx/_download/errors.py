"""The errors `download` raises, each with the HTTP ``status`` an adapter should answer.

Adapters map any exception with an integer ``status`` attribute raised before the
first body byte to that status; so a download refused for its path becomes a 403 or a
404 without the application catching anything.
"""

from __future__ import annotations


class DownloadError(Exception):
    """A download that cannot be served; `status` is the HTTP status to answer with.

    Raised as such (status 500) by a body whose file changed size while it was being
    sent, or whose async-iterable source produced more or fewer bytes than ``size``.
    """

    status: int = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class PathOutsideRoot(DownloadError, ValueError):
    """The requested path escapes ``root`` (``..``, an absolute path, a symlink that
    points outside): status 403."""

    status = 403


class DownloadNotFound(DownloadError, FileNotFoundError):
    """No regular file at the requested path (missing, a directory, a device, a path
    that cannot exist such as one holding NUL): status 404."""

    status = 404
