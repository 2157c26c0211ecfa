"""The metrics hook: what streams report, and where it goes.

Streams report to a `MetricsHook`: a stream opened or closed (with its duration and
outcome), items and bytes sent, items dropped, and circuit-breaker state changes. Each
report carries the stream's *kind* (``"sse"``, ``"export"``, ``"download"``,
``"upload"``, ``"broadcast"``, or your own) and *name* (a route or topic), which
exporters turn into labels. For uploads, the items are the parts handed to the caller
and the bytes are the request body's.

A broadcast hub's subscribers report as streams of kind ``"broadcast"``; the hub's
own figures (events published, replayed, resets, overflows) and its backend's health
go to the two optional methods of `BroadcastMetricsHook`, which every hook here
implements (a hook of your own without them simply does not get those figures).

The default hook is `NullMetrics` (every call does nothing). Install another one
process-wide with `set_metrics`, or pass ``metrics=`` where it is taken
(`CircuitBreaker`, `metered`, `parse_multipart`). `InMemoryMetrics` records everything
and is what tests use; `FanOut` reports to several hooks at once. The Prometheus
(`streamfx.metrics.prometheus`) and OpenTelemetry (`streamfx.metrics.otel`) exporters
implement the same protocol; each imports its client library, and nothing else in
streamfx does.

This package belongs to the core layer: it imports the standard library and
`streamfx._core` only, so every layer may report to it (see docs/architecture.md).

Calls are made from the event loop thread, synchronously, on the hot path: a hook
must be cheap and must not block. Counts are reported per batch where streams batch
(one call for many items), so the cost is per write, not per item.

Observability never breaks a stream: every stream calls its hook through `guarded`,
so an error a hook raises is logged at ERROR on the ``streamfx.metrics`` logger (once
per hook and method, with its traceback: a broken hook would otherwise log on every
item) and ignored; the stream goes on and the hook keeps being called. `FanOut` does
the same for each of its hooks, so the others still get the report.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from streamfx._core.util import aclose_iterator

T = TypeVar("T")

logger = logging.getLogger("streamfx.metrics")

STREAM_DURATION_BUCKETS: tuple[float, ...] = (
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    15.0,
    60.0,
    300.0,
    1800.0,
    3600.0,
)
"""Histogram bounds in seconds for stream durations, shared by the exporters: streams
live from milliseconds (a small export) to hours (an SSE feed)."""

Outcome = Literal["completed", "error", "closed"]
"""How a stream ended: exhausted, raised, or stopped early (closed, cancelled, disconnect)."""

BroadcastFigure = Literal["published", "replayed", "resets", "overflows"]
"""A broadcast hub's own counts: events published; events sent from history when a
subscriber resumed; ``reset`` events sent; subscribers ended for falling behind."""


class MetricsHook(Protocol):
    """What streams report. Implementations must be cheap and must not block."""

    def stream_opened(self, kind: str, name: str) -> None: ...

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None: ...

    def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None: ...

    def items_dropped(self, kind: str, name: str, items: int) -> None: ...

    def circuit_changed(self, name: str, old: str, new: str) -> None: ...


class BroadcastMetricsHook(Protocol):
    """The optional part of a hook that a broadcast hub reports to, by hub name."""

    def broadcast_counted(self, name: str, figure: BroadcastFigure, count: int) -> None: ...

    def broadcast_health(self, name: str, healthy: bool) -> None: ...


class NullMetrics:
    """The default hook: records nothing."""

    def stream_opened(self, kind: str, name: str) -> None:
        pass

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        pass

    def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None:
        pass

    def items_dropped(self, kind: str, name: str, items: int) -> None:
        pass

    def circuit_changed(self, name: str, old: str, new: str) -> None:
        pass

    def broadcast_counted(self, name: str, figure: BroadcastFigure, count: int) -> None:
        pass

    def broadcast_health(self, name: str, healthy: bool) -> None:
        pass


Key = tuple[str, str]


@dataclass
class InMemoryMetrics:
    """A hook that keeps every figure in memory, keyed by ``(kind, name)``.

    Meant for tests and for small dashboards: ``active``, ``opened``, ``items``,
    ``bytes`` and ``dropped`` are counters; ``durations`` lists every closed stream's
    duration; ``outcomes`` counts ``(kind, name, outcome)``; ``circuit`` holds each
    breaker's current state and ``transitions`` every change in order; ``broadcast``
    counts ``(hub name, figure)`` and ``broadcast_healthy`` holds each hub's last
    reported backend health.
    """

    active: Counter[Key] = field(default_factory=Counter)
    opened: Counter[Key] = field(default_factory=Counter)
    items: Counter[Key] = field(default_factory=Counter)
    bytes: Counter[Key] = field(default_factory=Counter)
    dropped: Counter[Key] = field(default_factory=Counter)
    durations: dict[Key, list[float]] = field(default_factory=dict)
    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    circuit: dict[str, str] = field(default_factory=dict)
    transitions: list[tuple[str, str, str]] = field(default_factory=list)
    broadcast: Counter[Key] = field(default_factory=Counter)
    broadcast_healthy: dict[str, bool] = field(default_factory=dict)

    def stream_opened(self, kind: str, name: str) -> None:
        self.active[kind, name] += 1
        self.opened[kind, name] += 1

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        self.active[kind, name] -= 1
        self.durations.setdefault((kind, name), []).append(duration)
        self.outcomes[kind, name, outcome] += 1

    def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None:
        self.items[kind, name] += items
        self.bytes[kind, name] += nbytes

    def items_dropped(self, kind: str, name: str, items: int) -> None:
        self.dropped[kind, name] += items

    def circuit_changed(self, name: str, old: str, new: str) -> None:
        self.circuit[name] = new
        self.transitions.append((name, old, new))

    def broadcast_counted(self, name: str, figure: BroadcastFigure, count: int) -> None:
        self.broadcast[name, figure] += count

    def broadcast_health(self, name: str, healthy: bool) -> None:
        self.broadcast_healthy[name] = healthy

    def total(self, figure: Literal["active", "opened", "items", "bytes", "dropped"]) -> int:
        """The sum of one counter over every ``(kind, name)``."""
        counter: Counter[Key] = getattr(self, figure)
        return sum(counter.values())


class FanOut:
    """A hook that passes every report to each of `hooks`, in the order given.

    For a process that exports to more than one place (Prometheus and a live
    dashboard, say). Each hook is called through `guarded`: one that raises is logged
    (once per method) and skipped, and the hooks after it still get the report.
    """

    def __init__(self, *hooks: MetricsHook) -> None:
        self.hooks = hooks
        self._guarded = tuple(guarded(hook) for hook in hooks)

    def stream_opened(self, kind: str, name: str) -> None:
        for hook in self._guarded:
            hook.stream_opened(kind, name)

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        for hook in self._guarded:
            hook.stream_closed(kind, name, duration, outcome)

    def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None:
        for hook in self._guarded:
            hook.items_sent(kind, name, items, nbytes)

    def items_dropped(self, kind: str, name: str, items: int) -> None:
        for hook in self._guarded:
            hook.items_dropped(kind, name, items)

    def circuit_changed(self, name: str, old: str, new: str) -> None:
        for hook in self._guarded:
            hook.circuit_changed(name, old, new)

    def broadcast_counted(self, name: str, figure: BroadcastFigure, count: int) -> None:
        for hook in self._guarded:
            hook.broadcast_counted(name, figure, count)

    def broadcast_health(self, name: str, healthy: bool) -> None:
        for hook in self._guarded:
            hook.broadcast_health(name, healthy)


class Guarded:
    """`hook`, called so that an error it raises never reaches the caller: the error is
    logged (once per hook and method, see `guarded`) and the call returns None. The
    optional broadcast methods are passed on when `hook` has them (a callable
    attribute), else do nothing."""

    __slots__ = ("hook",)

    def __init__(self, hook: MetricsHook) -> None:
        self.hook = hook

    def stream_opened(self, kind: str, name: str) -> None:
        try:
            self.hook.stream_opened(kind, name)
        except Exception as exc:
            _report(self.hook, "stream_opened", exc)

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        try:
            self.hook.stream_closed(kind, name, duration, outcome)
        except Exception as exc:
            _report(self.hook, "stream_closed", exc)

    def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None:
        try:
            self.hook.items_sent(kind, name, items, nbytes)
        except Exception as exc:
            _report(self.hook, "items_sent", exc)

    def items_dropped(self, kind: str, name: str, items: int) -> None:
        try:
            self.hook.items_dropped(kind, name, items)
        except Exception as exc:
            _report(self.hook, "items_dropped", exc)

    def circuit_changed(self, name: str, old: str, new: str) -> None:
        try:
            self.hook.circuit_changed(name, old, new)
        except Exception as exc:
            _report(self.hook, "circuit_changed", exc)

    def broadcast_counted(self, name: str, figure: BroadcastFigure, count: int) -> None:
        report = getattr(self.hook, "broadcast_counted", None)
        if callable(report):
            try:
                report(name, figure, count)
            except Exception as exc:
                _report(self.hook, "broadcast_counted", exc)

    def broadcast_health(self, name: str, healthy: bool) -> None:
        report = getattr(self.hook, "broadcast_health", None)
        if callable(report):
            try:
                report(name, healthy)
            except Exception as exc:
                _report(self.hook, "broadcast_health", exc)


def guarded(hook: MetricsHook) -> Guarded | NullMetrics:
    """`hook` as streams call it: through `Guarded`, so that its errors are logged and
    ignored (`NullMetrics`, which cannot fail, and a hook already guarded are returned
    as they are)."""
    if type(hook) is NullMetrics or isinstance(hook, Guarded):
        return hook
    return Guarded(hook)


def reports_items(hook: MetricsHook | Guarded) -> bool:
    """False when `hook`'s ``items_sent`` is `NullMetrics`' no-op (the hook itself, a
    subclass that does not override it, or either behind `Guarded`): a stream then
    skips the call, which it would otherwise make once per chunk written."""
    inner = hook.hook if isinstance(hook, Guarded) else hook
    method = getattr(inner, "items_sent", None)
    return getattr(method, "__func__", None) is not NullMetrics.items_sent


# (id of the hook, method) -> the hook, kept so that its id is not reused: what was
# already logged. Only hooks that failed are kept.
_reported: dict[tuple[int, str], object] = {}


def _report(hook: object, method: str, exc: Exception) -> None:
    key = (id(hook), method)
    if key in _reported:
        return
    _reported[key] = hook
    logger.error(
        "the metrics hook %s.%s raised %s: ignored, the stream goes on (later errors "
        "from this hook's %s are not logged)",
        type(hook).__name__,
        method,
        type(exc).__name__,
        method,
        exc_info=exc,
    )


_hook: MetricsHook = NullMetrics()


def get_metrics() -> MetricsHook:
    """The process-wide hook that streams report to when none is passed."""
    return _hook


def set_metrics(hook: MetricsHook) -> MetricsHook:
    """Install `hook` process-wide and return the previous one (to restore it later)."""
    global _hook
    previous, _hook = _hook, hook
    return previous


def metered(
    source: AsyncIterable[T], kind: str, name: str = "", *, metrics: MetricsHook | None = None
) -> AsyncGenerator[T, None]:
    """Pass `source` through, reporting it to `metrics` (default: the process-wide hook).

    Reports ``stream_opened`` at the first iteration, ``items_sent`` for each item (with
    its length in bytes for ``bytes``/``bytearray``/``memoryview`` items, else 0), and
    ``stream_closed`` exactly once with the elapsed time and the outcome when iteration
    ends for any reason. Closing this stream closes the source.
    """
    return _metered(source, kind, name, metrics)


async def _metered(
    source: AsyncIterable[T], kind: str, name: str, metrics: MetricsHook | None
) -> AsyncGenerator[T, None]:
    hook = guarded(metrics if metrics is not None else _hook)
    iterator = aiter(source)
    hook.stream_opened(kind, name)
    started = time.monotonic()
    outcome: Outcome = "closed"
    try:
        async for item in iterator:
            nbytes = len(item) if isinstance(item, bytes | bytearray) else 0
            if isinstance(item, memoryview):
                nbytes = item.nbytes
            hook.items_sent(kind, name, 1, nbytes)
            yield item
        outcome = "completed"
    except Exception:
        outcome = "error"
        raise
    finally:
        try:
            await aclose_iterator(iterator)
        finally:
            hook.stream_closed(kind, name, time.monotonic() - started, outcome)
