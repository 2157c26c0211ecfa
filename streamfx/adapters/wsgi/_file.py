"""A file range as a read-only file object, for a WSGI server's ``wsgi.file_wrapper``."""

from __future__ import annotations

from streamfx._response.response import FileRange


class FileSlice:
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
