"""`circuit` and `CircuitBreaker`: stop opening streams against a failing source.

Why hand-written: pybreaker guards *calls* (and its async support goes through
Tornado), and purgatory guards awaited calls behind its own storage layer; neither
models what a stream needs: the check happens once when iteration *starts*, the
outcome is known only when iteration *ends* (possibly much later, possibly by an
early close that is neither a success nor a failure), and half-open must admit a
bounded number of concurrent trial streams. The state machine is small (below) and
fully synchronous, so it needs no locks under asyncio.

States:

- ``"closed"``: streams run; each failure adds to a count of consecutive failures,
  each success resets it. At `failure_threshold` consecutive failures it opens.
- ``"open"``: every new stream fails at once with `CircuitOpenError`, without pulling
  anything from its source, until `reset_timeout` seconds have passed.
- ``"half_open"``: up to `half_open_max` trial streams may run at a time; more get
  `CircuitOpenError`. A trial that completes closes the circuit; one that fails opens
  it again for another `reset_timeout`.

A stream that is closed early or cancelled counts as neither success nor failure (it
only gives back its half-open trial slot). Exceptions that are instances of
`exclude` count as neither, too: they say nothing about the source's health.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import Literal, TypeVar, get_args

from streamfx._core.util import aclose_iterator
from streamfx.errors import StreamfxError
from streamfx.metrics import MetricsHook, get_metrics, guarded

logger = logging.getLogger("streamfx.circuit")

T = TypeVar("T")

CircuitState = Literal["closed", "open", "half_open"]
CIRCUIT_STATES: tuple[CircuitState, ...] = get_args(CircuitState)
Listener = Callable[["CircuitBreaker", CircuitState, CircuitState], object]


class CircuitOpenError(StreamfxError):
    """Raised when a stream is started while its circuit is open.

    `retry_after` is the number of seconds until the breaker will admit a trial
    stream (0 when it is half-open but its trial slots are taken). Answered by every
    adapter, when raised before a response starts, with 503 and ``Retry-After``: the
    seconds rounded up; the body is the status phrase (the breaker's name stays in the
    server's log).
    """

    status_code = 503

    def __init__(self, name: str, retry_after: float) -> None:
        label = f"circuit {name!r}" if name else "circuit"
        seconds = max(math.ceil(retry_after), 0) if math.isfinite(retry_after) else 0
        super().__init__(
            f"{label} is open; retry in {retry_after:.1f}s",
            headers={"Retry-After": str(seconds)},
        )
        self.name = name
        self.retry_after = retry_after


class CircuitBreaker:
    """Counts stream failures and refuses new streams while a source is unhealthy.

    ``CircuitBreaker(failure_threshold=5, reset_timeout=30.0)``; see the module
    docstring for the state machine. `listener(breaker, old, new)` callables added with
    `add_listener` are called on every state change, as is the metrics hook's
    ``circuit_changed(name, old, new)``; one that raises is logged (``streamfx.circuit``
    for a listener, ``streamfx.metrics`` for the hook) and ignored: the breaker changes
    state all the same and the other listeners are called. `clock` is injectable for
    tests.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        *,
        half_open_max: int = 1,
        exclude: tuple[type[BaseException], ...] = (),
        name: str = "",
        metrics: MetricsHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for label, value in (
            ("failure_threshold", failure_threshold),
            ("half_open_max", half_open_max),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        if (
            isinstance(reset_timeout, bool)
            or not isinstance(reset_timeout, int | float)
            or not (0 < reset_timeout < float("inf"))
        ):
            raise ValueError(
                f"reset_timeout must be a positive finite number, got {reset_timeout!r}"
            )
        self.failure_threshold = failure_threshold
        self.reset_timeout = float(reset_timeout)
        self.half_open_max = half_open_max
        self.exclude = exclude
        self.name = name
        self._metrics = metrics
        self._clock = clock
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trials = 0
        self._generation = 0
        self._listeners: list[Listener] = []

    # -- observation -------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state; an open breaker whose timeout has passed reads as half-open."""
        if self._state == "open" and self._clock() - self._opened_at >= self.reset_timeout:
            self._set_state("half_open")
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted while closed."""
        return self._failures

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(breaker, old_state, new_state)`` on every state change."""
        self._listeners.append(listener)

    # -- the protocol a stream follows ---------------------------------------------

    def before_stream(self) -> int | None:
        """Admit a new stream or raise `CircuitOpenError`.

        Returns a trial token if the stream is a half-open trial, else None; pass it to
        `after_stream` when the stream ends, whatever happens.
        """
        state = self.state
        if state == "closed":
            return None
        if state == "open":
            remaining = self.reset_timeout - (self._clock() - self._opened_at)
            raise CircuitOpenError(self.name, max(remaining, 0.0))
        if self._trials >= self.half_open_max:
            raise CircuitOpenError(self.name, 0.0)
        self._trials += 1
        return self._generation

    def after_stream(self, trial: int | None, error: BaseException | None, completed: bool) -> None:
        """Record how an admitted stream ended.

        `completed` is True for a stream that ran to exhaustion; `error` is the exception
        it raised, if any; neither means it was closed early or cancelled.
        """
        current_trial = (
            trial is not None and trial == self._generation and self._state == "half_open"
        )
        if current_trial:
            self._trials -= 1
        if error is not None and not isinstance(error, self.exclude):
            self._record_failure()
        elif completed:
            if self._state == "closed":
                self._failures = 0
            elif current_trial:
                self._set_state("closed")
        # A success from a stream admitted before the circuit opened proves nothing
        # about the source now, so it is ignored while open or half-open.

    def _record_failure(self) -> None:
        if self._state == "half_open":
            self._open()
            return
        self._failures += 1
        if self._state == "closed" and self._failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._failures = 0
        self._set_state("open")

    def _set_state(self, new: CircuitState) -> None:
        old = self._state
        if old == new:
            return
        self._state = new
        if new == "half_open":
            self._generation += 1
            self._trials = 0
        guarded(self._metrics or get_metrics()).circuit_changed(self.name, old, new)
        for listener in list(self._listeners):
            try:
                listener(self, old, new)
            except Exception:
                logger.exception(
                    "a listener of the circuit breaker %r raised on %s -> %s: ignored",
                    self.name,
                    old,
                    new,
                )


def circuit(source: AsyncIterable[T], breaker: CircuitBreaker) -> AsyncGenerator[T, None]:
    """Guard a stream with `breaker`.

    The breaker is consulted once, when iteration starts: if it is open,
    `CircuitOpenError` is raised before anything is pulled from `source`. If the source
    raises, that counts as a failure (unless excluded); if it is exhausted, as a
    success; if the consumer stops early or is cancelled, as neither.
    """
    return _circuit(source, breaker)


async def _circuit(source: AsyncIterable[T], breaker: CircuitBreaker) -> AsyncGenerator[T, None]:
    trial = breaker.before_stream()
    iterator = aiter(source)
    error: BaseException | None = None
    completed = False
    try:
        async for item in iterator:
            yield item
        completed = True
    except Exception as exc:
        error = exc
        raise
    finally:
        try:
            await aclose_iterator(iterator)
        finally:
            breaker.after_stream(trial, error, completed)
