"""Reading parts of a file without blocking the event loop.

`read_spans(path, spans)` yields the bytes of `spans` in order: a ``bytes`` span is
yielded as it is (multipart framing), a `ByteRange` span is read from the file in
chunks of `CHUNK_SIZE` bytes (the last one of a range may be shorter).

Promises:

- Opening, reading and seeking happen in the event loop's default executor (a worker
  thread); the loop only waits. One operation is in flight at a time. To save thread
  hops, one hop reads up to `CHUNKS_PER_HOP` chunks, which are still yielded one by
  one: no chunk is larger than `CHUNK_SIZE`.
- The file is opened at the first iteration (a body that is never iterated holds no
  file descriptor), and is closed when the generator ends for any reason. If it is
  closed while a read is in flight, the close waits for that read to finish (a file
  is never closed under a thread that is using it); if that wait is itself
  cancelled, the file is closed as soon as the read finishes.
- A range that ends early because the file shrank after it was measured raises
  `DownloadError`, so that the adapter aborts the response instead of sending a short
  body as if it were whole. Bytes the file gained are not sent.

Hand-written rather than aiofiles/anyio: those add a dependency for the same
``run_in_executor`` call and do not batch several chunks per hop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

from streamfx._download.errors import DownloadError
from streamfx._download.ranges import ByteRange

CHUNK_SIZE = 64 * 1024
CHUNKS_PER_HOP = 4

R = TypeVar("R")


class _ThreadedFile:
    """A file opened and read in worker threads, one operation at a time."""

    __slots__ = ("_file", "_path", "_pending")

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: BinaryIO | None = None
        self._pending: asyncio.Future[object] | None = None

    async def _run(self, function: Callable[..., R], *args: object) -> R:
        loop = asyncio.get_running_loop()
        pending = loop.run_in_executor(None, function, *args)
        self._pending = pending  # type: ignore[assignment]
        # shield: a cancelled reader must not forget the operation still running.
        result = await asyncio.shield(pending)
        self._pending = None
        return result

    def _open(self) -> None:
        self._file = open(self._path, "rb", buffering=0)  # noqa: SIM115 - closed in aclose

    async def open(self) -> None:
        await self._run(self._open)

    def _read(self, offset: int, total: int, chunk_size: int) -> list[bytes]:
        file = self._file
        assert file is not None
        file.seek(offset)
        chunks: list[bytes] = []
        while total > 0:
            chunk = file.read(min(chunk_size, total))
            if not chunk:
                break
            chunks.append(chunk)
            total -= len(chunk)
        return chunks

    async def read(self, offset: int, total: int, chunk_size: int) -> list[bytes]:
        """Up to `total` bytes from `offset`, in chunks of at most `chunk_size`."""
        return await self._run(self._read, offset, total, chunk_size)

    def _close_now(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    async def aclose(self) -> None:
        """Close the file once no operation is in flight."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await asyncio.wait([pending])
            except asyncio.CancelledError:
                pending.add_done_callback(lambda _: self._close_now())
                raise
            if not pending.cancelled():
                pending.exception()  # its error, if any, was already raised to the reader
        self._close_now()


async def read_spans(
    path: Path,
    spans: Sequence[bytes | ByteRange],
    chunk_size: int = CHUNK_SIZE,
    chunks_per_hop: int = CHUNKS_PER_HOP,
) -> AsyncGenerator[bytes, None]:
    """Yield `spans` of the file at `path`; see the module docstring."""
    file = _ThreadedFile(path)
    try:
        await file.open()
        for span in spans:
            if isinstance(span, bytes):
                yield span
                continue
            position = span.start
            while position < span.stop:
                wanted = min(chunk_size * chunks_per_hop, span.stop - position)
                chunks = await file.read(position, wanted, chunk_size)
                for chunk in chunks:
                    position += len(chunk)
                    yield chunk
                if sum(map(len, chunks)) < wanted:
                    raise DownloadError(
                        f"{path} shrank while it was being sent: expected bytes up to "
                        f"{span.stop}, the file ends at {position}"
                    )
    finally:
        await file.aclose()
