"""The WSGI iterable behind `streamfx.adapters.wsgi.to_wsgi`: an async body iterated by
one task on the background loop, answering the server thread's ``next()`` calls.

Promises:

- One task (the *driver*) iterates the body, so the body's steps all run in the same
  task and context, as under an ASGI server.
- Each ``next()`` asks the driver for a chunk and waits. The answer is the next chunk
  joined with every further chunk that is ready at once (the driver steps the body's
  ``__anext__`` synchronously; up to `COALESCE_BYTES`). When that step suspends
  instead, the batch is answered at once and the driver finishes that one step, holding
  its chunk for the next ``next()``: the body runs at most one chunk ahead of the server.
- Order is kept; the body's error is raised from ``next()`` after the chunks before it.
- ``close()`` cancels the driver, closes the body (``aclose()``) on the loop and waits
  for that, at most `CLOSE_TIMEOUT` seconds (then it logs and returns, the cleanup
  still running).
- The write timeout (`WriteWatchdog`): when the server has not asked for the next chunk
  `write_timeout` seconds after it was given one (its write is stuck: the client takes
  nothing), the driver is cancelled and the body closed on the loop at once, and the
  next ``next()`` raises `TimeoutError`. The body is closed once, whichever of this and
  ``close()`` comes first. When the application can reach the client's socket
  (gunicorn's ``environ["gunicorn.socket"]``, waitress's channel), it is shut down too,
  which wakes the server's thread from its stuck write (gunicorn's write fails with
  ``EPIPE``, which it ignores quietly; waitress's I/O thread sees the socket shut,
  closes the channel, drops its output buffers and wakes the thread waiting for room
  in them, which ends the request) so the thread is free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import types
from collections.abc import AsyncIterator, Generator, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import Any, Final

from streamfx._response.response import StreamResponse
from streamfx.adapters._common import WriteWatchdog

CLOSE_TIMEOUT: Final = 5.0
"""Seconds ``close()`` waits for the body's cleanup before giving up (and logging)."""

COALESCE_BYTES: Final = 64 * 1024
"""Ready chunks are joined into one answer while it is smaller than this."""

_logger = logging.getLogger("streamfx.adapters.wsgi")


class WSGIBody(Iterator[bytes]):
    """The WSGI iterable. One task on the loop (the *driver*) iterates the async body;
    each ``next()`` asks it for a chunk and waits for the answer.

    The driver answers with the next chunk joined with every further chunk that is
    ready at once (up to `COALESCE_BYTES`): it steps the body's next ``__anext__``
    synchronously, and if that completes without suspending, the chunk joins the batch.
    When it does suspend, the batch is answered at once and the driver finishes that
    one step, in the same task, holding its chunk for the next ``next()``: the body
    runs at most one chunk ahead of the server. Errors are answered after the chunks
    before them.
    """

    __slots__ = (
        "_asked",
        "_closed",
        "_closing",
        "_connection",
        "_done",
        "_driver",
        "_first",
        "_iterator",
        "_loop",
        "_response",
        "_stalled",
        "_wake",
        "_watchdog",
        "_write_timeout",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        response: StreamResponse,
        write_timeout: float | None = None,
        connection: socket.socket | None = None,
    ) -> None:
        self._loop = loop
        self._response = response
        self._write_timeout = write_timeout
        self._connection = connection  # the client's socket, when the server gives it
        # Used on the server's thread only:
        self._first: bytes | None = None
        self._done = False
        self._closed = False
        # Used on the loop only:
        self._iterator: AsyncIterator[bytes] | None = None
        self._driver: asyncio.Task[None] | None = None
        self._asked: Future[bytes | None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._watchdog: WriteWatchdog | None = None
        self._stalled = False  # the write timeout ended the body
        self._closing: asyncio.Task[None] | None = None

    def pull_first(self) -> None:
        """Pull the first chunk now (before the status line goes out); raise its error."""
        self._first = self._pull_now()

    def __iter__(self) -> WSGIBody:
        return self

    def __next__(self) -> bytes:
        first = self._first
        if first is not None:
            self._first = None
            return first
        chunk = self._pull_now()
        if chunk is None:
            raise StopIteration
        return chunk

    def _pull_now(self) -> bytes | None:
        if self._done or self._closed:
            return None
        answer: Future[bytes | None] = Future()
        self._loop.call_soon_threadsafe(self._ask, answer)
        try:
            chunk = answer.result()
        except BaseException:
            self._done = True
            answer.cancel()
            raise
        if chunk is None:
            self._done = True
        return chunk

    # -- on the loop ---------------------------------------------------------------

    def _ask(self, answer: Future[bytes | None]) -> None:
        if self._stalled:
            timeout = self._write_timeout
            _answer(answer, None, TimeoutError(f"the client took nothing for {timeout} s"))
            return
        if self._watchdog is None:
            self._watchdog = WriteWatchdog(self._write_timeout, self._stall, _logger)
        else:
            self._watchdog.written()  # the server came back: it wrote the last chunk
        if self._driver is None:
            self._driver = self._loop.create_task(self._drive(), name="streamfx.wsgi body")
        self._asked = answer
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _next_question(self) -> Future[bytes | None]:
        while (asked := self._asked) is None:
            self._wake = self._loop.create_future()
            await self._wake
        self._asked = None
        return asked

    async def _drive(self) -> None:
        iterator = self._iterator = aiter(self._response.body)
        held: list[bytes] = []
        outcome: Exception | None = None  # StopAsyncIteration or the body's error
        answer: Future[bytes | None] | None = None
        try:
            while True:
                answer = await self._next_question()
                while not held and outcome is None:
                    try:
                        chunk = await anext(iterator)
                    except Exception as exc:
                        outcome = exc
                    else:
                        if chunk:
                            held.append(chunk)
                suspended = None
                if outcome is None:
                    suspended, outcome = _take_ready(iterator, held)
                if not held:
                    if isinstance(outcome, StopAsyncIteration):
                        _answer(answer, None, None)
                    else:
                        _answer(answer, None, outcome)
                    return
                _answer(answer, held[0] if len(held) == 1 else b"".join(held), None)
                held.clear()
                if self._watchdog is not None:
                    self._watchdog.writing()
                if suspended is not None:
                    try:
                        chunk = await _resume(*suspended)
                    except Exception as exc:
                        outcome = exc
                    else:
                        if chunk:
                            held.append(chunk)
        finally:
            if answer is not None and not answer.done():
                _answer(answer, None, RuntimeError("the response body was closed"))

    def _stall(self) -> None:
        """The write timeout passed: end the body now (the next ``next()`` raises)."""
        self._stalled = True
        self._close_once()
        if self._connection is not None:
            with contextlib.suppress(OSError):  # already closed or reset: nothing to wake
                self._connection.shutdown(socket.SHUT_RDWR)

    def _close_once(self) -> asyncio.Task[None]:
        """The one task that stops the driver and closes the body."""
        if self._closing is None:
            self._closing = self._loop.create_task(self._close_body(), name="streamfx.wsgi close")
        return self._closing

    async def _aclose(self) -> None:
        await self._close_once()

    async def _close_body(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        driver = self._driver
        if driver is not None and not driver.done():
            driver.cancel()
            await asyncio.wait([driver])
        iterator = self._iterator
        if iterator is not None and iterator is not self._response.body:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        await self._response.aclose()

    # -- on the server's thread ----------------------------------------------------

    def close(self) -> None:
        """Stop the driver, close the body; wait at most `CLOSE_TIMEOUT` seconds."""
        if self._closed:
            return
        self._closed = True
        self._first = None
        future = asyncio.run_coroutine_threadsafe(self._aclose(), self._loop)
        try:
            future.result(timeout=CLOSE_TIMEOUT)
        except TimeoutError:
            _logger.warning("stream cleanup still running after %s s", CLOSE_TIMEOUT)
        except Exception:
            _logger.exception("stream cleanup failed")


_Step = Generator[Any, None, bytes]


def _take_ready(
    iterator: AsyncIterator[bytes], held: list[bytes]
) -> tuple[tuple[_Step, Any] | None, Exception | None]:
    """Append to `held` every chunk `iterator` gives without suspending, up to
    `COALESCE_BYTES`. Returns the step that suspended (with what it yielded), or the
    error / `StopAsyncIteration` that ended the body."""
    size = sum(map(len, held))
    while size < COALESCE_BYTES:
        step = anext(iterator).__await__()
        try:
            yielded = step.send(None)
        except StopIteration as stop:
            chunk: bytes = stop.value
            held.append(chunk)
            size += len(chunk)
        except Exception as exc:
            return None, exc
        else:
            return (step, yielded), None
    return None, None


@types.coroutine
def _resume(step: _Step, yielded: Any) -> Generator[Any, Any, bytes]:
    """Await the rest of `step`, which already ran until it yielded `yielded`: what
    ``await`` would have done had it been awaited from the start (same task)."""
    while True:
        try:
            yield yielded
        except GeneratorExit:
            step.close()
            raise
        except BaseException as exc:
            try:
                yielded = step.throw(exc)
            except StopIteration as stop:
                result: bytes = stop.value
                return result
        else:
            return (yield from step)


def _answer(answer: Future[bytes | None], chunk: bytes | None, error: BaseException | None) -> None:
    try:
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(chunk)
    except InvalidStateError:  # the server's thread gave up waiting (cancelled it)
        pass
