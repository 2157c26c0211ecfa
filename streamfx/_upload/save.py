"""Saving a part's content to a file: `save_part` (``await part.save(...)``).

The helper users otherwise write by hand, and wrong: blocking writes on the event loop,
a half-written file left behind when the upload is refused, a client's file name joined
to a directory.

Promises:

- The event loop is not blocked by the disk: each write, and the final close, runs in
  a worker thread (the loop's default executor), one at a time. Backpressure: while
  one buffer is being written the next is filled from the request, then the reader
  waits; at most two buffers of `WRITE_SIZE` bytes are held. Only the metadata
  operations (creating the file, renaming or removing it) run on the loop: they are
  what guarantees that nothing is left behind at the moment an error propagates.
- Nothing of a refused, failed or cancelled save is left on disk. The content is
  written to a new hidden file in the target's directory (created with ``O_EXCL``, so
  never through a symlink or over another file) and renamed to its name only once the
  part was read to its end; on any error, or on cancellation, the temporary file is
  removed before the error propagates.
- A directory target never lets the client's name escape it: the name used is
  `Part.filename` (already a base name without separators or control characters) if it
  is a usable file name here (not empty, not hidden, not too long, encodable), else a
  generated ``upload-<32 hex digits>`` name. Either way the path is inside the
  directory.
- With ``overwrite=False`` (the default) an existing file is never replaced:
  `FileExistsError`, and the new file is removed. The check is atomic where the file
  system supports hard links (``os.link`` fails if the name exists); elsewhere it is a
  check before the rename.
- The file is not fsync'ed: a crash of the machine right after the save may lose it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from streamfx._upload.part import Part

WRITE_SIZE: Final = 256 * 1024
"""Content is gathered into buffers of about this size before each write."""

_MAX_NAME_BYTES: Final = 255  # a file name's limit on common file systems


async def save_part(
    part: Part, destination: str | os.PathLike[str] | None = None, *, overwrite: bool = False
) -> Path:
    """Write the rest of `part`'s content to a file and return the file's path.

    `destination`:

    - an existing directory: the file is created in it, named after the part's file
      name when that is usable, else ``upload-<32 hex digits>``;
    - any other path: the file itself (its directory must exist);
    - ``None``: a new file in the system's temporary directory, which the caller then
      owns (and deletes).

    Raises `FileExistsError` when the file exists and `overwrite` is false (checked
    before anything is read from the part, and again as the file is given its name),
    the `UploadError` of the upload if it is refused while the content is read, and any
    `OSError` of the disk. On every error and on cancellation the file is not created
    (and the temporary one is removed).
    """
    target, temporary, descriptor = _create(part.filename, destination, overwrite)
    writer = _Writer(descriptor, temporary)
    try:
        buffer = bytearray()
        async for chunk in part:
            buffer += chunk
            if len(buffer) >= WRITE_SIZE:
                await writer.write(buffer)
                buffer = bytearray()
        await writer.write(buffer)
        await writer.close()
        _publish(temporary, target, overwrite)
    except BaseException:
        writer.discard()
        raise
    return target


class _Writer:
    """One file written from worker threads, one write in flight at a time.

    A write already handed to a thread cannot be stopped: a cancelled caller leaves it
    running (it is shielded, never cancelled) and the descriptor is closed only once it
    is done, since closing a descriptor another thread is writing to could hand its
    number to a file opened meanwhile.
    """

    def __init__(self, descriptor: int, path: Path) -> None:
        self._descriptor = descriptor
        self._open = True  # until the close was handed to a thread
        self._path = path
        self._pending: asyncio.Future[None] | None = None

    async def write(self, data: bytearray) -> None:
        """Wait for the previous write, then start writing `data` (not waited for)."""
        await self._wait()
        if data:
            loop = asyncio.get_running_loop()
            self._pending = loop.run_in_executor(None, _write_all, self._descriptor, data)

    async def close(self) -> None:
        """Wait for the last write, then close the file (in a thread too: closing may
        flush on a network file system)."""
        await self._wait()
        self._open = False
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, os.close, self._descriptor)
        await self._wait()

    async def _wait(self) -> None:
        pending = self._pending
        if pending is not None:
            await asyncio.shield(pending)
            self._pending = None

    def discard(self) -> None:
        """Remove the file now, and close it as soon as no thread is using it."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        descriptor = self._descriptor if self._open else None
        self._open = False
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda done: _finish_discard(done, descriptor))
        else:
            _finish_discard(pending, descriptor)


def _finish_discard(done: asyncio.Future[None] | None, descriptor: int | None) -> None:
    if descriptor is not None:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    if done is not None and not done.cancelled():
        done.exception()  # retrieved: the error that matters is already propagating


def _create(
    filename: str | None, destination: str | os.PathLike[str] | None, overwrite: bool
) -> tuple[Path, Path, int]:
    """The final path, and the temporary file (path and open descriptor) beside it."""
    if destination is None:
        directory = Path(tempfile.gettempdir())
        target = directory / _generated_name()
    else:
        target = Path(destination)
        if target.is_dir():
            directory = target
            target = directory / (_usable_name(filename) or _generated_name())
        else:
            directory = target.parent
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(f"{target} exists (pass overwrite=True to replace it)")
    temporary = directory / f".{uuid.uuid4().hex}.upload-part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return target, temporary, os.open(temporary, flags, 0o666)


def _write_all(descriptor: int, data: bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def _publish(temporary: Path, target: Path, overwrite: bool) -> None:
    """Give the finished file its name (atomically when `overwrite`: a rename)."""
    if overwrite:
        os.replace(temporary, target)
        return
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise FileExistsError(f"{target} exists (pass overwrite=True to replace it)") from None
    except OSError:  # no hard links here: check, then rename
        if os.path.lexists(target):
            raise FileExistsError(f"{target} exists (pass overwrite=True to replace it)") from None
        os.replace(temporary, target)
        return
    os.unlink(temporary)


def _usable_name(filename: str | None) -> str | None:
    """`filename` if it can be a file's name in a directory as it is, else ``None``."""
    if not filename or filename.startswith("."):
        return None
    try:
        encoded = os.fsencode(filename)
    except UnicodeError:
        return None
    if len(encoded) > _MAX_NAME_BYTES or b"/" in encoded or b"\x00" in encoded:
        return None
    if os.sep != "/" and (os.sep in filename or ":" in filename):  # pragma: no cover - Windows
        return None
    return filename


def _generated_name() -> str:
    return f"upload-{uuid.uuid4().hex}"
