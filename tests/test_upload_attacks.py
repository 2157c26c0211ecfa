"""The upload attack table (tests/_upload_rows.py) run through `parse_multipart` in
process: for every row the answer (status, error class, the limit it names), the parts
handed over, how much of the body was read, the memory held, the loop kept turning, and
what is left in the upload directory.

The caller here behaves as an application should: it saves each file with
``Part.save`` and, when the upload is refused, deletes the files it had completed. What
the table then proves is that nothing else is left (no partial file, no temporary file).
"""

from __future__ import annotations

import fnmatch
import os
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from streamfx import UploadError, UploadTooLarge, parse_multipart
from tests._loop_ticker import Ticker
from tests._upload_rows import LIMITS, ROWS, STALL, Row


class CountingBody:
    """A row's body, generated chunk by chunk, counting what the parser read."""

    def __init__(self, chunks: Callable[[], Iterator[bytes]]) -> None:
        self._chunks = chunks
        self.sent = 0
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._read()

    async def _read(self) -> AsyncIterator[bytes]:
        try:
            for chunk in self._chunks():
                self.sent += len(chunk)
                yield chunk
        finally:
            self.closed = True


class Outcome:
    """What the caller saw."""

    def __init__(self) -> None:
        self.error: UploadError | None = None
        self.parts: list[tuple[str, str | None]] = []
        self.peak = 0
        self.stall = 0.0


async def run(row: Row, body: CountingBody, directory: Path) -> Outcome:
    outcome = Outcome()
    saved: list[Path] = []
    tracemalloc.start()
    try:
        async with Ticker() as ticker:
            try:
                stream = parse_multipart(body, row.content_type, **{**LIMITS, **row.options})
                async with stream as parts:
                    async for part in parts:
                        if row.parts is not None:
                            outcome.parts.append((part.name, part.filename))
                        if part.filename is not None:
                            saved.append(await part.save(directory))
                        else:
                            async for _ in part:
                                pass
            except UploadError as error:
                outcome.error = error
                for path in saved:  # the application drops what it kept of the upload
                    path.unlink()
        outcome.stall = ticker.longest
        outcome.peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return outcome


def left_in(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
async def test_attack_row(row: Row, tmp_path: Path) -> None:
    body = CountingBody(row.chunks)
    outcome = await run(row, body, tmp_path)
    error = outcome.error

    assert (None if error is None else error.status_code) == row.status, error
    if row.error is not None:
        assert isinstance(error, row.error)
        assert error.detail and len(error.detail) < 300  # short, for the client
    if row.limit is not None:
        assert isinstance(error, UploadTooLarge)
        assert error.limit == row.limit
        assert f"{row.limit}={error.value}" in error.detail
    if row.parts is not None:
        assert outcome.parts == list(row.parts)
    if row.read_at_most is not None:
        assert body.sent <= row.read_at_most
    if body.sent:
        assert body.closed
    assert outcome.peak <= row.memory
    assert outcome.stall <= STALL

    left = left_in(tmp_path)
    if error is None:
        assert len(left) == len(row.files_left)
        for name, pattern in zip(left, sorted(row.files_left), strict=True):
            assert fnmatch.fnmatch(name, pattern), (name, pattern)
    else:
        assert left == []


def test_every_row_cites_its_source_and_ids_are_unique() -> None:
    assert len({row.id for row in ROWS}) == len(ROWS)
    assert all(row.advisory for row in ROWS)
    assert len(ROWS) >= 37
