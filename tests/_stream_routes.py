"""The framework-neutral routes every adapter's test app serves (tests/apps/).

Each route takes the query parameters and the path parameter (``""`` when the route
has none) and returns a `StreamResponse`; the apps wrap them in views. What the bodies
did is counted in a `Tally` (tests/apps/tally.py) that the test reads. Downloads are
served from ``ROOT/files``; a route that cannot build its response raises (a
`DownloadError`), and each app answers that the way its adapter offers.

Paths (``{name}`` is the path parameter):

- ``/lines?n=&delay=``: `n` numbered lines, chunked; ``/empty``: none;
  ``/sized?n=&short=``: the same with a ``Content-Length`` (10 bytes too many when
  `short`); ``/forever``: lines until the client leaves.
- ``/stall``: a body whose first chunk never comes; ``/endless``: 64 KiB chunks as
  fast as they are taken.
- ``/fail-before?error=runtime|oserror|refused`` (403 for refused);
  ``/fail-after?length=``: 20 lines, then an error (with a ``Content-Length`` when
  `length` is given).
- ``/gone``: `for_request` raises `DownloadNotFound` (404); ``/echo``: `for_request`
  answers with the method and the ``X-Probe`` header.
- ``/sse?n=&heartbeat=&hold=&gated=``: `n` events (``event K``, id ``K``), then the
  farewell ``bye`` (event ``shutdown``) on `request_shutdown`. `hold`: stay open after
  the last event; `gated`: event K waits until ``tally.go > K``.
- ``/slow?strategy=&capacity=&size=&n=``: `n` lines of `size` bytes through a buffer of
  that policy, counting ``produced`` and ``max_lead``.
- ``/files/{name}``: `download` from ``ROOT/files``;
  ``/export/{name}?n=&fail_at=``: rows in the format `name`.
- ``/circuit/{name}`` (``export`` or ``download``): an export of rows, or a download
  of a byte stream, whose source is guarded by a breaker that a failure has just
  opened for `CIRCUIT_RESET` seconds: the body raises `CircuitOpenError` before its
  first byte; the source never starts (it would count ``tally.started``).
- ``/busy``: the route itself raises `CircuitOpenError` (as an app that asks its
  breaker before it builds a response), before any response exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from streamfx import (
    BufferPolicy,
    CircuitBreaker,
    CircuitOpenError,
    DownloadNotFound,
    ServerSentEvent,
    StreamfxError,
    StreamResponse,
    circuit,
    download,
    export,
    sse,
)
from streamfx._core.util import aclose_iterator
from streamfx._response.engine import encode_batches
from tests.apps.tally import Tally, TallyMetrics

Route = Callable[[Mapping[str, str], str], StreamResponse]

FAREWELL = ServerSentEvent("bye", event="shutdown")
CIRCUIT_RESET = 2.5  # seconds an opened breaker refuses streams: Retry-After: 3
CHUNK = 65536  # bytes per chunk of /endless


class Refused(StreamfxError):
    status_code = 403


def lines(items: range | list[int], size: int = 0) -> bytes:
    """What `numbered` sends for `items`: each number padded with `size` x's, a line each."""
    pad = b"x" * size
    return b"".join(b"%s%d\n" % (pad, item) for item in items)


def numbered(
    tally: Tally,
    count: int | None,
    *,
    delay: float = 0.0,
    size: int = 0,
    policy: BufferPolicy | None = None,
    fail_at: int | None = None,
    error: Exception | None = None,
) -> AsyncIterator[bytes]:
    """A batching body of `count` numbered lines (forever when None), reported to the
    tally's metrics as kind ``test``."""

    async def source() -> AsyncIterator[int]:
        tally.started += 1
        try:
            index = 0
            while count is None or index < count:
                if index == fail_at:
                    raise error or RuntimeError("the source failed")
                if delay:
                    await asyncio.sleep(delay)
                tally.produce()
                yield index
                index += 1
        finally:
            tally.finalized += 1

    def encode(batch: list[int]) -> bytes:
        return lines(batch, size)

    return encode_batches(
        source(),
        policy or BufferPolicy(16, "suspend"),
        encode,
        kind="test",
        metrics=TallyMetrics(tally),
    )


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


def make_routes(tally: Tally, root: Path) -> dict[str, Route]:
    """Paths (``{name}`` marks the path parameter) and their routes."""

    def text(
        body: AsyncIterator[bytes], headers: list[tuple[str, str]] | None = None
    ) -> StreamResponse:
        headers = [("content-type", "text/plain"), *(headers or [])]
        return StreamResponse(200, headers, CountedBody(body, tally))

    def lines_route(query: Mapping[str, str], _: str) -> StreamResponse:
        delay = float(query.get("delay", "0"))
        return text(numbered(tally, int(query.get("n", "10")), delay=delay))

    def empty(query: Mapping[str, str], _: str) -> StreamResponse:
        return text(numbered(tally, 0))

    def sized(query: Mapping[str, str], _: str) -> StreamResponse:
        count = int(query.get("n", "10"))
        length = len(lines(range(count))) + (10 if "short" in query else 0)
        return text(numbered(tally, count), [("content-length", str(length))])

    def forever(query: Mapping[str, str], _: str) -> StreamResponse:
        return text(numbered(tally, None, delay=0.001))

    def stall(query: Mapping[str, str], _: str) -> StreamResponse:
        async def never() -> AsyncIterator[bytes]:
            tally.started += 1
            try:
                await asyncio.Event().wait()
                yield b"never"
            finally:
                tally.finalized += 1

        return text(never())

    def endless(query: Mapping[str, str], _: str) -> StreamResponse:
        async def chunks() -> AsyncIterator[bytes]:
            tally.started += 1
            try:
                while True:
                    tally.produce()
                    yield b"x" * CHUNK
                    await asyncio.sleep(0)  # a failing test must end, not spin
            finally:
                tally.finalized += 1

        return text(chunks())

    def fail_before(query: Mapping[str, str], _: str) -> StreamResponse:
        errors: dict[str, Exception] = {
            "runtime": RuntimeError("database exploded: secret detail"),
            "oserror": ConnectionRefusedError("db down"),
            "refused": Refused("not yours: /srv/secret"),
        }
        return text(numbered(tally, 5, fail_at=0, error=errors[query.get("error", "runtime")]))

    def fail_after(query: Mapping[str, str], _: str) -> StreamResponse:
        headers = [("content-length", query["length"])] if "length" in query else []
        return text(numbered(tally, 50, fail_at=20, delay=0.001), headers)

    def gone(query: Mapping[str, str], _: str) -> StreamResponse:
        def respond_to(method: str, headers: Any) -> StreamResponse:
            raise DownloadNotFound("no such file: gone.bin")

        body = CountedBody(numbered(tally, 3), tally)
        return StreamResponse(200, [], body, respond_to=respond_to)

    def echo(query: Mapping[str, str], _: str) -> StreamResponse:
        def respond_to(method: str, headers: Any) -> StreamResponse:
            probe = dict((key.lower(), value) for key, value in headers).get("x-probe", "")
            return text(once(f"{method} {probe}".encode()))

        return StreamResponse(500, [], CountedBody(once(b"not this"), tally), respond_to=respond_to)

    def events(query: Mapping[str, str], _: str) -> StreamResponse:
        count = int(query.get("n", "3"))
        heartbeat = float(query["heartbeat"]) if "heartbeat" in query else None

        async def source() -> AsyncIterator[ServerSentEvent]:
            tally.started += 1
            try:
                for index in range(count):
                    if "gated" in query:
                        while tally.go <= index:  # noqa: ASYNC110 - the test's client sets it
                            await asyncio.sleep(0.005)
                    yield ServerSentEvent(data=f"event {index}", id=str(index))
                if "hold" in query:
                    await asyncio.Event().wait()
            finally:
                tally.finalized += 1

        return sse(source(), heartbeat=heartbeat, farewell=FAREWELL)

    def slow(query: Mapping[str, str], _: str) -> StreamResponse:
        policy = BufferPolicy(int(query["capacity"]), query["strategy"])  # type: ignore[arg-type]
        size = int(query["size"])
        return text(numbered(tally, int(query["n"]), size=size, policy=policy))

    def files(query: Mapping[str, str], name: str) -> StreamResponse:
        return download(name, root=root / "files")

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

    def guarded(query: Mapping[str, str], kind: str) -> StreamResponse:
        breaker = CircuitBreaker(1, CIRCUIT_RESET, name="rows-db", clock=lambda: 0.0)
        breaker.after_stream(breaker.before_stream(), ConnectionError("db down"), False)

        async def rows() -> AsyncIterator[dict[str, int]]:
            tally.started += 1
            yield {"id": 1}

        async def chunks() -> AsyncIterator[bytes]:
            tally.started += 1
            yield b"x" * 10

        if kind == "download":
            return download(circuit(chunks(), breaker), filename="data.bin", size=10)
        return export(circuit(rows(), breaker), "csv", filename="rows.csv")

    def busy(query: Mapping[str, str], _: str) -> StreamResponse:
        raise CircuitOpenError("rows-db", CIRCUIT_RESET)

    return {
        "/lines": lines_route,
        "/empty": empty,
        "/sized": sized,
        "/forever": forever,
        "/stall": stall,
        "/endless": endless,
        "/fail-before": fail_before,
        "/fail-after": fail_after,
        "/gone": gone,
        "/echo": echo,
        "/sse": events,
        "/slow": slow,
        "/files/{name}": files,
        "/export/{name}": exported,
        "/circuit/{name}": guarded,
        "/busy": busy,
    }


async def once(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk


def raising(exc: Exception) -> StreamResponse:
    """A response whose body raises `exc` before its first chunk (for an adapter that
    has no other way to answer an error with its status)."""

    async def body() -> AsyncIterator[bytes]:
        raise exc
        yield b""  # pragma: no cover - makes this an async generator

    return StreamResponse(200, [], body())
