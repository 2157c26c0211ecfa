"""Start a `StreamResponse` inside a view, for frameworks whose views must return the
framework's own response object (Quart, Django): framework-neutral.

Such a framework sends the status line itself, *before* it iterates the body, so the
promise "the first chunk is pulled before the status" must be kept in the view. That
is what `prefetch` does: it resolves the response for the request, pulls the first
chunk, and hands back the status, headers and a body that yields that chunk and then
the rest. The adapters build their framework's response from it.

Shared by the Quart and Django adapters only (the ASGI, aiohttp and WSGI adapters send
the status line themselves); what every adapter shares is in `streamfx.adapters._common`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass

from streamfx._core.util import aclose_iterator
from streamfx._response.response import Headers, StreamResponse
from streamfx.adapters._common import WriteWatchdog, answer_error


@dataclass(slots=True)
class Prefetched:
    """What a framework response is built from: `status`, `headers` and `body`.

    `body` yields the first chunk (already pulled) and then the rest, skipping empty
    chunks. However it ends (exhausted, an error, ``aclose()``, cancellation), it
    closes the original body exactly once; its ``aclose()`` is safe to call again.
    """

    status: int
    headers: Headers
    body: ResumedBody


async def prefetch(
    response: StreamResponse,
    method: str,
    headers: Sequence[tuple[str, str]],
    logger: logging.Logger,
    *,
    write_timeout: float | None = None,
) -> Prefetched:
    """Resolve `response` for the request and pull its first chunk.

    - ``response.for_request(method, headers)`` is called first (skipped without
      ``respond_to``).
    - ``HEAD``: the body is closed without being iterated; status and headers stay.
    - An error from ``for_request`` or from the first chunk becomes an error answer
      (`streamfx.adapters._common.answer_error`): a `StreamfxError`'s ``status_code``,
      ``headers`` and ``detail``, anything else 500; the exception is logged to
      `logger`.
      The body is closed either way.
    - Cancelled while pulling (the client left): the body is closed, then
      `CancelledError` propagates.
    - `write_timeout`: see `ResumedBody`.
    """
    try:
        resolved = response.for_request(method, headers) if response.respond_to else response
    except Exception as exc:
        await response.aclose()
        return error_prefetched(exc, logger)
    body = resolved.body
    if method == "HEAD":
        await aclose_iterator(body)
        return Prefetched(resolved.status, resolved.headers, ResumedBody(b"", None, None))
    iterator = aiter(body)
    try:
        first = await anext(iterator, b"")
    except Exception as exc:
        await _close(iterator, body)
        return error_prefetched(exc, logger)
    except BaseException:
        await _close(iterator, body)
        raise
    reader = ResumedBody(first, iterator, body, write_timeout, logger)
    return Prefetched(resolved.status, resolved.headers, reader)


def error_prefetched(exc: BaseException, logger: logging.Logger) -> Prefetched:
    """The answer to `exc` as a `Prefetched` (see `answer_error`; logs to `logger`)."""
    answer = answer_error(exc, logger)
    return Prefetched(answer.status, answer.headers, ResumedBody(answer.body, None, None))


async def _close(iterator: AsyncIterator[bytes], body: AsyncIterable[bytes] | None) -> None:
    try:
        await aclose_iterator(iterator)
    finally:
        if body is not None and iterator is not body:
            await aclose_iterator(body)


class ResumedBody:
    """The first chunk, then the rest of `iterator`; closes it (and `body`) once.

    An async iterator with ``aclose()`` (not an async generator, so that closing it
    before it was ever iterated still closes the original body).

    `write_timeout` (`WriteWatchdog`): once a chunk has been handed out, the framework
    sends it and then asks for the next one. When that has not happened after
    `write_timeout` seconds (the server's flow control holds the send: the client takes
    nothing), the task iterating the body is cancelled, as the framework does on a
    disconnect, and the body is closed as it leaves.
    """

    __slots__ = ("_body", "_first", "_iterator", "_logger", "_timeout", "_watchdog")

    def __init__(
        self,
        first: bytes,
        iterator: AsyncIterator[bytes] | None,
        body: AsyncIterable[bytes] | None,
        write_timeout: float | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._first: bytes | None = first or None
        self._iterator = iterator
        self._body = body
        self._timeout = write_timeout if iterator is not None else None
        self._logger = logger or logging.getLogger(__name__)
        self._watchdog: WriteWatchdog | None = None

    @property
    def closed(self) -> bool:
        return self._iterator is None

    def __aiter__(self) -> ResumedBody:
        return self

    async def __anext__(self) -> bytes:
        if self._watchdog is not None:
            self._watchdog.written()
        first = self._first
        if first is not None:
            self._first = None
            self._hand_out()
            return first
        iterator = self._iterator
        if iterator is None:
            raise StopAsyncIteration
        try:
            while True:
                chunk = await anext(iterator)
                if chunk:
                    self._hand_out()
                    return chunk
        except BaseException:
            # Exhausted, failed or cancelled: either way the body is done.
            await self.aclose()
            raise

    def _hand_out(self) -> None:
        watchdog = self._watchdog
        if watchdog is None:
            if self._timeout is None:
                return
            task = asyncio.current_task()
            if task is None:
                return
            # The task iterating the body is the one the framework sends from.
            watchdog = self._watchdog = WriteWatchdog(self._timeout, task.cancel, self._logger)
        watchdog.writing()

    async def aclose(self) -> None:
        """Close the original body (once; later calls do nothing)."""
        iterator, body = self._iterator, self._body
        self._first = None
        self._iterator = self._body = None
        self._timeout = None
        if self._watchdog is not None:
            self._watchdog.stop()
        if iterator is not None:
            await _close(iterator, body)
