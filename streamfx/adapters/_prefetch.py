"""Start a `StreamResponse` inside a view, for frameworks whose views must return the
framework's own response object (Quart, Django): framework-neutral.

Such a framework sends the status line itself, *before* it iterates the body, so the
promise "the first chunk is pulled before the status" must be kept in the view. That
is what `prefetch` does: it resolves the response for the request, pulls the first
chunk, and hands back the status, headers and a body that yields that chunk and then
the rest. The adapters build their framework's response from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from streamfx._core.util import aclose_iterator
from streamfx._response.response import Headers, StreamResponse
from streamfx.adapters._errors import error_headers, error_status, error_text


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
    - An error from ``for_request`` or from the first chunk becomes an error answer:
      the error's ``status`` (an int in 400..599) or 500, with a short plain-text body;
      5xx errors are logged to `logger`. The body is closed either way.
    - Cancelled while pulling (the client left): the body is closed, then
      `CancelledError` propagates.
    - `write_timeout`: see `ResumedBody`.
    """
    try:
        resolved = response.for_request(method, headers) if response.respond_to else response
    except Exception as exc:
        await response.aclose()
        return _error(exc, logger)
    body = resolved.body
    if method == "HEAD":
        await aclose_iterator(body)
        return Prefetched(resolved.status, resolved.headers, ResumedBody(b"", None, None))
    iterator = aiter(body)
    try:
        first = await anext(iterator, b"")
    except Exception as exc:
        await _close(iterator, body)
        return _error(exc, logger)
    except BaseException:
        await _close(iterator, body)
        raise
    reader = ResumedBody(first, iterator, body, write_timeout, logger)
    return Prefetched(resolved.status, resolved.headers, reader)


def _error(exc: Exception, logger: logging.Logger) -> Prefetched:
    status = error_status(exc)
    if status >= 500:
        logger.error("streamfx response failed before it started", exc_info=exc)
    text = error_text(exc, status)
    return Prefetched(status, error_headers(text), ResumedBody(text, None, None))


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

    `write_timeout`: once a chunk has been handed out, the framework sends it and then
    asks for the next one. When that takes `write_timeout` seconds (the server's flow
    control holds the send: the client takes nothing), the task iterating the body is
    cancelled, as the framework does on a disconnect, and the body is closed as it
    leaves. One timer per body, re-armed every `write_timeout`/4 seconds; per chunk
    only a timestamp is noted.
    """

    __slots__ = ("_body", "_first", "_iterator", "_logger", "_out_since", "_timeout", "_timer")

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
        self._logger = logger
        self._out_since = 0.0  # loop time the last chunk was handed out; 0.0: none out
        self._timer: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return self._iterator is None

    def __aiter__(self) -> ResumedBody:
        return self

    async def __anext__(self) -> bytes:
        self._out_since = 0.0
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
        timeout = self._timeout
        if timeout is None:
            return
        loop = asyncio.get_running_loop()
        self._out_since = loop.time()
        if self._timer is None:
            task = asyncio.current_task()
            if task is not None:
                self._watch(loop, task, timeout)

    def _watch(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], timeout: float
    ) -> None:
        interval = timeout / 4

        def check() -> None:
            since = self._out_since
            if since and loop.time() - since >= timeout and self._iterator is not None:
                if self._logger is not None:
                    self._logger.info(
                        "client took nothing for %.0f s; treating it as gone", timeout
                    )
                task.cancel()
                return
            self._timer = loop.call_later(interval, check)

        self._timer = loop.call_later(interval, check)

    async def aclose(self) -> None:
        """Close the original body (once; later calls do nothing)."""
        iterator, body = self._iterator, self._body
        self._first = None
        self._iterator = self._body = None
        self._timeout = None
        if self._timer is not None:
            self._timer.cancel()
        if iterator is not None:
            await _close(iterator, body)


def check_write_timeout(write_timeout: float | None) -> None:
    """Raise ValueError unless `write_timeout` is a positive number or None."""
    if write_timeout is not None and not write_timeout > 0:
        raise ValueError(f"write_timeout must be a positive number or None, got {write_timeout!r}")
