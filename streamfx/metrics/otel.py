"""A `MetricsHook` that reports through the OpenTelemetry metrics API.

Install with ``pip install 'streamfx[otel]'`` (the API only; the application chooses an
SDK and exporter). Then::

    from streamfx.metrics import set_metrics
    from streamfx.metrics.otel import OpenTelemetryMetrics

    set_metrics(OpenTelemetryMetrics())       # uses the global MeterProvider

The instruments, in OpenTelemetry's naming conventions (dotted names, UCUM units,
no ``_total`` suffix), are:

=============================  ================  =========  ==============================
name                           instrument        unit       meaning
=============================  ================  =========  ==============================
``streamfx.streams.active``    UpDownCounter     {stream}   streams open now
``streamfx.streams.closed``    Counter           {stream}   streams ended (with outcome)
``streamfx.items.sent``        Counter           {item}     items written
``streamfx.bytes.sent``        Counter           By         body bytes written
``streamfx.items.dropped``     Counter           {item}     items a buffer dropped
``streamfx.stream.duration``   Histogram         s          open-to-close time
``streamfx.circuit.state``     ObservableGauge   {state}    1 for a breaker's current
                                                            state, 0 for the others
``streamfx.broadcast.events``  Counter           {event}    a broadcast hub's figures
``streamfx.broadcast.up``      ObservableGauge   1          1 while a hub's backend is
                                                            healthy, else 0
=============================  ================  =========  ==============================

Stream instruments carry the attributes ``streamfx.stream.kind`` and
``streamfx.stream.name``; ``streamfx.streams.closed`` and ``streamfx.stream.duration``
add ``streamfx.stream.outcome`` (``completed``, ``error``, ``closed``). The circuit gauge
carries ``streamfx.circuit.name`` and ``streamfx.circuit.state``. The broadcast
instruments carry ``streamfx.broadcast.name`` (the hub's name), and the counter
``streamfx.broadcast.figure`` (``published``, ``replayed``, ``resets``, ``overflows``).

Without an SDK installed every instrument is a no-op, so the hook costs next to nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.util.types import Attributes

from streamfx._core.circuit import CIRCUIT_STATES
from streamfx._version import __version__
from streamfx.metrics import STREAM_DURATION_BUCKETS, BroadcastFigure, Outcome

__all__ = ["DEFAULT_DURATION_BOUNDARIES", "OpenTelemetryMetrics"]

DEFAULT_DURATION_BOUNDARIES = STREAM_DURATION_BUCKETS


class OpenTelemetryMetrics:
    """Reports every stream to OpenTelemetry instruments made from one meter.

    `meter_provider` defaults to the global provider (``metrics.set_meter_provider``);
    pass `meter` instead to use a meter you made. Safe to call from any thread.
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        meter: Meter | None = None,
        duration_boundaries: Sequence[float] = DEFAULT_DURATION_BOUNDARIES,
    ) -> None:
        if meter is None:
            meter = metrics.get_meter("streamfx", __version__, meter_provider=meter_provider)
        self.streams_active = meter.create_up_down_counter(
            "streamfx.streams.active", unit="{stream}", description="Streams open now."
        )
        self.streams_closed = meter.create_counter(
            "streamfx.streams.closed", unit="{stream}", description="Streams that ended."
        )
        self.items_sent_counter = meter.create_counter(
            "streamfx.items.sent", unit="{item}", description="Items written to clients."
        )
        self.bytes_sent_counter = meter.create_counter(
            "streamfx.bytes.sent", unit="By", description="Body bytes written to clients."
        )
        self.items_dropped_counter = meter.create_counter(
            "streamfx.items.dropped",
            unit="{item}",
            description="Items a bounded buffer dropped (sliding or dropping strategy).",
        )
        self.stream_duration = meter.create_histogram(
            "streamfx.stream.duration",
            unit="s",
            description="Time from a stream's first iteration to its end.",
            explicit_bucket_boundaries_advisory=list(duration_boundaries),
        )
        self._lock = threading.Lock()
        self._circuits: dict[str, str] = {}
        self._attributes: dict[tuple[str, str], Attributes] = {}
        self.circuit_state = meter.create_observable_gauge(
            "streamfx.circuit.state",
            callbacks=[self._observe_circuits],
            unit="{state}",
            description="1 for each circuit breaker's current state, 0 for its other states.",
        )
        self.broadcast_events = meter.create_counter(
            "streamfx.broadcast.events",
            unit="{event}",
            description="A broadcast hub's figures: published, replayed, resets, overflows.",
        )
        self._broadcast_up: dict[str, bool] = {}
        self.broadcast_up = meter.create_observable_gauge(
            "streamfx.broadcast.up",
            callbacks=[self._observe_broadcast_health],
            unit="1",
            description="1 while a broadcast hub's backend is healthy, else 0.",
        )

    def _stream(self, kind: str, name: str) -> Attributes:
        attributes = self._attributes.get((kind, name))
        if attributes is None:
            attributes = self._attributes[kind, name] = {
                "streamfx.stream.kind": kind,
                "streamfx.stream.name": name,
            }
        return attributes

    def stream_opened(self, kind: str, name: str) -> None:
        self.streams_active.add(1, self._stream(kind, name))

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        self.streams_active.add(-1, self._stream(kind, name))
        ended = {
            "streamfx.stream.kind": kind,
            "streamfx.stream.name": name,
            "streamfx.stream.outcome": outcome,
        }
        self.streams_closed.add(1, ended)
        self.stream_duration.record(duration, ended)

    def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None:
        attributes = self._stream(kind, name)
        if items:
            self.items_sent_counter.add(items, attributes)
        if nbytes:
            self.bytes_sent_counter.add(nbytes, attributes)

    def items_dropped(self, kind: str, name: str, items: int) -> None:
        self.items_dropped_counter.add(items, self._stream(kind, name))

    def circuit_changed(self, name: str, old: str, new: str) -> None:
        with self._lock:
            self._circuits[name] = new

    def _observe_circuits(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            current = list(self._circuits.items())
        return [
            Observation(
                1 if state == now else 0,
                {"streamfx.circuit.name": name, "streamfx.circuit.state": state},
            )
            for name, now in current
            for state in CIRCUIT_STATES
        ]

    def broadcast_counted(self, name: str, figure: BroadcastFigure, count: int) -> None:
        self.broadcast_events.add(
            count, {"streamfx.broadcast.name": name, "streamfx.broadcast.figure": figure}
        )

    def broadcast_health(self, name: str, healthy: bool) -> None:
        with self._lock:
            self._broadcast_up[name] = healthy

    def _observe_broadcast_health(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            current = list(self._broadcast_up.items())
        return [
            Observation(1 if up else 0, {"streamfx.broadcast.name": name}) for name, up in current
        ]
