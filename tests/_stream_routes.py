"""Framework-neutral routes for the Quart and Django adapter tests.

Each route takes the query parameters and the path parameter (``""`` when the route
has none) and returns a `StreamResponse`; the framework tests wrap them in views.
What the bodies did is counted in a `Tally` shared with the test (same process, same
event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamfx import (
    BufferPolicy,
    DownloadError,
    ServerSentEvent,
    StreamResponse,
    download,
    export,
    sse,
)
from streamfx._core.util import aclose_iterator
from streamfx._response.engine import encode_batches

Route = Callable[[Mapping[str, str], str], StreamResponse]

SIZE = 300_000


@dataclass
class Tally:
    started: int = 0
    finalized: int = 0
    produced: int = 0
    closes: int = 0  # aclose() calls an adapter made on a `text` body
    root: Path = Path()


class Refused(Exception):
    status = 403


def lines(items: list[int]) -> bytes:
    return b"".join(b"%d\n" % item for item in items)


def numbered(
    tally: Tally,
    count: int | None,
    *,
    delay: float = 0.0,
    fail_at: int | None = None,
    error: Exception | None = None,
) -> AsyncIterator[bytes]:
    """A batching body of `count` numbered lines (forever when None)."""

    async def source() -> AsyncIterator[int]:
        tally.started += 1
        try:
            index = 0
            while count is None or index < count:
                if index == fail_at:
                    raise error or RuntimeError("failed")
                if delay:
                    await asyncio.sleep(delay)
                yield index
                index += 1
        finally:
            tally.finalized += 1

    def encode(batch: list[int]) -> bytes:
        return lines(batch)

    return encode_batches(source(), BufferPolicy(16, "suspend"), encode, kind="test")


async def _raising(exc: Exception) -> AsyncIterator[bytes]:
    raise exc
    yield b""  # pragma: no cover - makes this an async generator


class CountedBody:
    """Forwards to `body` and counts ``aclose()`` calls in `tally.closes`.

    Not an async generator, so nothing but an adapter's ``aclose()`` (no garbage
    collector hook) counts: the count shows the adapter closed the body, and how often.
    """

    def __init__(self, body: AsyncIterator[bytes], tally: Tally) -> None:
        self.body = body
        self.tally = tally

    def __aiter__(self) -> CountedBody:
        return self

    async def __anext__(self) -> bytes:
        return await anext(self.body)

    async def aclose(self) -> None:
        self.tally.closes += 1
        await aclose_iterator(self.body)


def text(tally: Tally, body: AsyncIterator[bytes]) -> StreamResponse:
    return StreamResponse(200, [("content-type", "text/plain")], CountedBody(body, tally))


def make_routes(tally: Tally) -> dict[str, Route]:
    """Paths (``{name}`` marks the path parameter) and their routes."""

    def lines_route(query: Mapping[str, str], _: str) -> StreamResponse:
        return text(tally, numbered(tally, int(query.get("n", "10"))))

    def forever(query: Mapping[str, str], _: str) -> StreamResponse:
        return text(tally, numbered(tally, None, delay=0.001))

    def endless(query: Mapping[str, str], _: str) -> StreamResponse:
        async def chunks() -> AsyncIterator[bytes]:
            tally.started += 1
            try:
                while True:
                    tally.produced += 1
                    yield b"x" * 65536
                    await asyncio.sleep(0)  # a failing test must end, not spin
            finally:
                tally.finalized += 1

        return text(tally, chunks())

    def fail_before(query: Mapping[str, str], _: str) -> StreamResponse:
        return text(tally, numbered(tally, 5, fail_at=0))

    def refused(query: Mapping[str, str], _: str) -> StreamResponse:
        return text(tally, numbered(tally, 5, fail_at=0, error=Refused("no")))

    def fail_after(query: Mapping[str, str], _: str) -> StreamResponse:
        return text(tally, numbered(tally, 50, fail_at=20, delay=0.001))

    def events(query: Mapping[str, str], _: str) -> StreamResponse:
        count = int(query.get("n", "3"))
        gap = float(query.get("gap", "0"))

        async def source() -> AsyncIterator[ServerSentEvent]:
            tally.started += 1
            try:
                for index in range(count):
                    if index:
                        await asyncio.sleep(gap)
                    yield ServerSentEvent(data=f"event {index}", id=str(index))
            finally:
                tally.finalized += 1

        return sse(source(), heartbeat=float(query.get("heartbeat", "15")))

    def files(query: Mapping[str, str], name: str) -> StreamResponse:
        try:
            return download(name, root=tally.root)
        except DownloadError as exc:  # answered with its status by the adapter
            return text(tally, _raising(exc))

    def exported(query: Mapping[str, str], fmt: str) -> StreamResponse:
        count = int(query.get("n", "100"))
        fail_at = int(query.get("fail_at", "-1"))

        async def rows() -> AsyncIterator[dict[str, Any]]:
            tally.started += 1
            try:
                for index in range(count):
                    if index == fail_at:
                        raise RuntimeError("the database went away")
                    yield {"id": index, "name": f"row {index}", "formula": "=1+1"}
            finally:
                tally.finalized += 1

        return export(rows(), fmt, filename="rows.out")

    return {
        "/lines": lines_route,
        "/forever": forever,
        "/endless": endless,
        "/fail-before": fail_before,
        "/refused": refused,
        "/fail-after": fail_after,
        "/sse": events,
        "/files/{name}": files,
        "/export/{name}": exported,
    }


def write_file(root: Path) -> bytes:
    content = bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256)
    (root / "data.bin").write_bytes(content)
    return content
