"""`ensuring`: run a finalizer exactly once when a stream's iteration ends."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from streamfx._core.util import aclose_iterator, call_maybe_async

T = TypeVar("T")


def ensuring(
    source: AsyncIterable[T], finalizer: Callable[[], object] | Callable[[], Awaitable[object]]
) -> AsyncGenerator[T, None]:
    """Pass `source` through and run ``finalizer()`` exactly once when iteration ends.

    "Ends" covers every way: the source is exhausted, it raises, the consumer stops
    early with ``aclose()`` (even before the first item was asked for), or the task
    iterating it is cancelled. The source is closed first, then the finalizer runs; an
    async finalizer is awaited. What happens to an error, case by case:

    - **Normal end** (the source is exhausted): the finalizer runs before the
      consumer's ``async for`` ends. If it raises, that error is the stream's error,
      raised after the last item.
    - **Error end** (the source raises): the finalizer runs, then the source's error
      propagates. If the finalizer raises too, its error propagates instead, with the
      source's error as its ``__context__``.
    - **Early close** (``aclose()``, or the iterating task is cancelled): the finalizer
      runs inside the close. If it raises, ``aclose()`` raises that error (a cancelled
      task gets it in place of `CancelledError`, with that as its ``__context__``).
      Behind `buffer`, `merge` or `heartbeat` the finalizer runs in their producer
      task when their consumer closes them; its error is raised by *their*
      ``aclose()``, to whoever closed them early, never left unread (behind `merge`,
      when several finalizers raise, the first error is raised and the others are
      logged at ERROR on ``streamfx.channel``).
    - **Behind a response body** (`sse`, `export`) whose client disconnects: nobody
      is left to receive the error, so the body logs it at ERROR on the
      ``streamfx.response`` logger, with the stream's kind and name and the traceback,
      and closes quietly. If the body was already failing (an item that cannot be
      encoded, say), its own error is the one that propagates and the finalizer's is
      logged.

    A stream dropped without ``aclose()`` relies on the event loop's async-generator
    finalization (as every async generator does); adapters and `contextlib.aclosing`
    always close explicitly.
    """
    if not callable(finalizer):
        raise TypeError(f"ensuring() needs a callable finalizer, got {type(finalizer).__name__}")
    return _Ensuring(source, finalizer)


class _Ensuring(AsyncGenerator[T, None]):
    __slots__ = ("_finalized", "_finalizer", "_generator", "_source")

    def __init__(self, source: AsyncIterable[T], finalizer: Callable[[], object]) -> None:
        self._source = source
        self._finalizer = finalizer
        self._finalized = False
        self._generator = self._run()

    async def _run(self) -> AsyncGenerator[T, None]:
        iterator = aiter(self._source)
        try:
            async for item in iterator:
                yield item
        finally:
            try:
                await aclose_iterator(iterator)
            finally:
                await self._finalize()

    async def _finalize(self) -> None:
        if not self._finalized:
            self._finalized = True
            await call_maybe_async(self._finalizer)

    def __anext__(self) -> Coroutine[Any, Any, T]:
        return self._generator.__anext__()

    def asend(self, value: None) -> Coroutine[Any, Any, T]:
        return self._generator.asend(value)

    def athrow(
        self,
        typ: type[BaseException] | BaseException,
        val: Any = None,
        tb: TracebackType | None = None,
    ) -> Coroutine[Any, Any, T]:
        return self._generator.athrow(typ, val, tb)

    async def aclose(self) -> None:
        try:
            await self._generator.aclose()
        finally:
            if not self._finalized:  # closed before the first item: the body never ran
                try:
                    await aclose_iterator(self._source)
                finally:
                    await self._finalize()
