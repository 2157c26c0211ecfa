"""The streamfx combinators as aiostream pipe operators.

``stream.iterate(xs) | streamfx.pipe.buffer(64, "sliding") | aiostream.pipe.map(f)``

Each function takes the same arguments as its `streamfx` namesake minus the source,
which the pipe supplies, and has the same semantics. The piped aiostream stream is
iterated inside its ``streamcontext``, as aiostream requires, so it is closed when the
pipeline ends. `merge` merges the piped stream with the sources given.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar, cast

from aiostream.core import Stream, pipable_operator, streamcontext

from streamfx._core.buffer import buffer as _buffer
from streamfx._core.circuit import CircuitBreaker
from streamfx._core.circuit import circuit as _circuit
from streamfx._core.ensuring import ensuring as _ensuring
from streamfx._core.heartbeat import heartbeat as _heartbeat
from streamfx._core.merge import merge as _merge
from streamfx._core.policy import Strategy, check_capacity, check_stall_after, check_strategy
from streamfx._core.progress import Reporter
from streamfx._core.progress import progress as _progress
from streamfx._core.tap import tap as _tap

T = TypeVar("T")
B = TypeVar("B")
B_co = TypeVar("B_co", covariant=True)


class PassThrough(Protocol):
    """A pipe stage that keeps the element type of whatever is piped into it."""

    def __call__(self, source: AsyncIterable[T], /) -> Stream[T]: ...


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
    stall_after: float | None = None,
) -> AsyncIterator[T]:
    return _buffer(
        _in_context(source), capacity, strategy, on_drop=on_drop, stall_after=stall_after
    )


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


class HeartbeatPipe(Protocol[B_co]):
    """A pipe stage that adds beats of type ``B`` to whatever is piped into it."""

    def __call__(self, source: AsyncIterable[T], /) -> Stream[T | B_co]: ...


def buffer(
    capacity: int,
    strategy: Strategy = "suspend",
    *,
    on_drop: Callable[[Any], object] | None = None,
    stall_after: float | None = None,
) -> PassThrough:
    """`streamfx.buffer` as a pipe operator (`stall_after` too: None, never pause, by
    default). Arguments are checked here, at the call."""
    check_capacity(capacity)
    check_strategy(strategy)
    check_stall_after(stall_after)
    return cast(PassThrough, _buffer_op.pipe(capacity, strategy, on_drop, stall_after))


def tap(fn: Callable[[Any], object] | Callable[[Any], Awaitable[object]]) -> PassThrough:
    """`streamfx.tap` as a pipe operator."""
    return cast(PassThrough, _tap_op.pipe(fn))


def heartbeat(interval: float, beat: B_co | Callable[[], B_co]) -> HeartbeatPipe[B_co]:
    """`streamfx.heartbeat` as a pipe operator."""
    operator: Any = _heartbeat_op  # aiostream cannot type a callable-or-value argument
    return cast(HeartbeatPipe[B_co], operator.pipe(interval, beat))


def merge(*others: AsyncIterable[T]) -> PassThrough:
    """`streamfx.merge` as a pipe operator: the piped stream merged with `others`."""
    return cast(PassThrough, _merge_op.pipe(*others))


def ensuring(finalizer: Callable[[], object] | Callable[[], Awaitable[object]]) -> PassThrough:
    """`streamfx.ensuring` as a pipe operator."""
    return cast(PassThrough, _ensuring_op.pipe(finalizer))


def circuit(breaker: CircuitBreaker) -> PassThrough:
    """`streamfx.circuit` as a pipe operator."""
    return cast(PassThrough, _circuit_op.pipe(breaker))


def progress(
    report: Reporter, *, every: int | None = None, interval: float | None = None
) -> PassThrough:
    """`streamfx.progress` as a pipe operator."""
    return cast(PassThrough, _progress_op.pipe(report, every, interval))
