"""The errors `download` raises: `StreamfxError`s with the HTTP status to answer.

Every adapter answers a `StreamfxError` raised before the first body byte with its
`status_code` and client-safe `detail` (here the status phrase: the message names
server paths and goes to the log only); so a download refused for its path becomes a
403 or a 404 without the application catching anything. Raised by ``download()``
itself, before any response exists, it is answered by the adapter's
``error_response(exc)`` (or the framework's error handler wired to it).
"""

from __future__ import annotations

from streamfx.errors import StreamfxError


class DownloadError(StreamfxError):
    """A download that cannot be served; `status_code` is the HTTP status to answer with
    (``DownloadError(message, status_code=403)``).

    Raised as such (500) by a body whose file changed size while it was being sent, or
    whose async-iterable source produced more or fewer bytes than ``size``.
    """

    status_code = 500


class PathOutsideRoot(DownloadError, ValueError):
    """The requested path escapes ``root`` (``..``, an absolute path, a symlink that
    points outside): 403."""

    status_code = 403


class DownloadNotFound(DownloadError, FileNotFoundError):
    """No regular file at the requested path (missing, a directory, a device, a path
    that cannot exist such as one holding NUL): 404."""

    status_code = 404
