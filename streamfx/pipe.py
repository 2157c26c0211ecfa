"""The streamfx combinators as aiostream pipe operators.

``stream.iterate(xs) | streamfx.pipe.buffer(64, "sliding") | aiostream.pipe.map(f)``

Each function takes the same arguments as its `streamfx` namesake minus the source,
which the pipe supplies, and has the same semantics. The piped aiostream stream is
iterated inside its ``streamcontext``, as aiostream requires, so it is closed when the
pipeline ends. `merge` merges the piped stream with the sources given.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import TypeVar, cast

from aiostream.core import Stream, pipable_operator, streamcontext

from ._buffer import buffer as _buffer
from ._circuit import CircuitBreaker
from ._circuit import circuit as _circuit
from ._ensuring import ensuring as _ensuring
from ._heartbeat import heartbeat as _heartbeat
from ._merge import merge as _merge
from ._policy import Strategy
from ._progress import Reporter
from ._progress import progress as _progress
from ._tap import tap as _tap

T = TypeVar("T")
B = TypeVar("B")

Pipe = Callable[[AsyncIterable[T]], Stream[T]]

__all__ = ["buffer", "circuit", "ensuring", "heartbeat", "merge", "progress", "tap"]


async def _in_context(source: AsyncIterable[T]) -> AsyncIterator[T]:
    async with streamcontext(source) as streamer:
        async for item in streamer:
            yield item


@pipable_operator
def _buffer_op(
    source: AsyncIterable[T],
    capacity: int,
    strategy: Strategy = "suspend",
    on_drop: Callable[[T], object] | None = None,
) -> AsyncIterator[T]:
    return _buffer(_in_context(source), capacity, strategy, on_drop=on_drop)


@pipable_operator
def _tap_op(source: AsyncIterable[T], fn: Callable[[T], object]) -> AsyncIterator[T]:
    return _tap(_in_context(source), fn)


@pipable_operator
def _heartbeat_op(
    source: AsyncIterable[T], interval: float, beat: B | Callable[[], B]
) -> AsyncIterator[T | B]:
    return _heartbeat(_in_context(source), interval, beat)


@pipable_operator
def _merge_op(source: AsyncIterable[T], *others: AsyncIterable[T]) -> AsyncIterator[T]:
    return _merge(*(_in_context(each) for each in (source, *others)))


@pipable_operator
def _ensuring_op(source: AsyncIterable[T], finalizer: Callable[[], object]) -> AsyncIterator[T]:
    return _ensuring(_in_context(source), finalizer)


@pipable_operator
def _circuit_op(source: AsyncIterable[T], breaker: CircuitBreaker) -> AsyncIterator[T]:
    return _circuit(_in_context(source), breaker)


@pipable_operator
def _progress_op(
    source: AsyncIterable[T], report: Reporter, every: int | None, interval: float | None
) -> AsyncIterator[T]:
    return _progress(_in_context(source), report, every=every, interval=interval)


def buffer(
    capacity: int, strategy: Strategy = "suspend", *, on_drop: Callable[[T], object] | None = None
) -> Pipe[T]:
    """`streamfx.buffer` as a pipe operator. Arguments are checked here, at the call."""
    _buffer((), capacity, strategy)  # type: ignore[arg-type]  # validate eagerly
    return _buffer_op.pipe(capacity, strategy, on_drop)


def tap(fn: Callable[[T], object] | Callable[[T], Awaitable[object]]) -> Pipe[T]:
    """`streamfx.tap` as a pipe operator."""
    return _tap_op.pipe(fn)


def heartbeat(
    interval: float, beat: B | Callable[[], B]
) -> Callable[[AsyncIterable[T]], Stream[T | B]]:
    """`streamfx.heartbeat` as a pipe operator."""
    operator = cast(
        "Callable[..., Callable[[AsyncIterable[T]], Stream[T | B]]]", _heartbeat_op.pipe
    )
    return operator(interval, beat)


def merge(*others: AsyncIterable[T]) -> Pipe[T]:
    """`streamfx.merge` as a pipe operator: the piped stream merged with `others`."""
    return cast("Pipe[T]", _merge_op.pipe(*others))


def ensuring(finalizer: Callable[[], object] | Callable[[], Awaitable[object]]) -> Pipe[T]:
    """`streamfx.ensuring` as a pipe operator."""
    return cast("Pipe[T]", _ensuring_op.pipe(finalizer))


def circuit(breaker: CircuitBreaker) -> Pipe[T]:
    """`streamfx.circuit` as a pipe operator."""
    return cast("Pipe[T]", _circuit_op.pipe(breaker))


def progress(
    report: Reporter, *, every: int | None = None, interval: float | None = None
) -> Pipe[T]:
    """`streamfx.progress` as a pipe operator."""
    return cast("Pipe[T]", _progress_op.pipe(report, every, interval))
