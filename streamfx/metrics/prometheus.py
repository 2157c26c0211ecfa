"""A `MetricsHook` that exports to Prometheus through ``prometheus-client``.

Install with ``pip install 'streamfx[prometheus]'``. Then::

    from streamfx.metrics import set_metrics
    from streamfx.metrics.prometheus import PrometheusMetrics

    set_metrics(PrometheusMetrics())          # registers on prometheus_client.REGISTRY

and serve ``prometheus_client.generate_latest()`` (or ``make_asgi_app()``) at ``/metrics``.

The metrics, in Prometheus' naming conventions (base units, ``_total`` on counters), are:

===================================  =========  =====================  ================
name                                 type       labels                 meaning
===================================  =========  =====================  ================
``streamfx_active_streams``          gauge      kind, name             streams open now
``streamfx_streams_closed_total``    counter    kind, name, outcome    streams ended
``streamfx_items_sent_total``        counter    kind, name             items written
``streamfx_bytes_sent_total``        counter    kind, name             body bytes written
``streamfx_items_dropped_total``     counter    kind, name             items a buffer dropped
``streamfx_stream_duration_seconds`` histogram  kind, name             open-to-close time
``streamfx_circuit_state``           gauge      name, state            1 for a breaker's
                                                                       current state, 0
                                                                       for the others
``streamfx_broadcast_events_total``  counter    name, figure           a broadcast hub's
                                                                       figures
``streamfx_broadcast_up``            gauge      name                   1 while a hub's
                                                                       backend is healthy
===================================  =========  =====================  ================

*kind* is ``sse``, ``export``, ``download``, ``upload`` or your own; *name* is the
stream's route or topic name as the application passed it. Every distinct name is a
label value, so keep names to routes (not user ids). *outcome* is ``completed``,
``error`` or ``closed`` (stopped early: the client went away or the stream was cancelled).
For broadcast, *name* is the hub's name and *figure* is ``published``, ``replayed``,
``resets`` or ``overflows``.

Pass ``registry=`` to register somewhere other than the default registry (tests, or
several apps in one process), and ``namespace=`` to change the ``streamfx`` prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from streamfx._core.circuit import CIRCUIT_STATES
from streamfx.metrics import STREAM_DURATION_BUCKETS, BroadcastFigure, Outcome

__all__ = ["DEFAULT_DURATION_BUCKETS", "PrometheusMetrics"]

DEFAULT_DURATION_BUCKETS = STREAM_DURATION_BUCKETS


class _StreamChildren(NamedTuple):
    """One stream's labelled metrics, looked up once per (kind, name) and kept.

    Created at a stream's first report, so its counters are exported (at 0) from the
    moment it opens, which ``rate()`` needs.
    """

    active: Gauge
    items: Counter
    bytes: Counter
    dropped: Counter
    duration: Histogram


class PrometheusMetrics:
    """Reports every stream to Prometheus metrics registered on `registry`.

    `registry` defaults to prometheus-client's global ``REGISTRY``; ``None`` registers
    nowhere (collect the metrics yourself).

    Creating two instances on the same registry raises ``ValueError`` (Prometheus
    refuses duplicate metric names): make one per registry and share it. Every call
    is a few dictionary look-ups and lock-protected additions; safe from any thread.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        namespace: str = "streamfx",
        duration_buckets: Sequence[float] = DEFAULT_DURATION_BUCKETS,
    ) -> None:
        stream_labels = ("kind", "name")
        self.active_streams = Gauge(
            "active_streams",
            "Streams open now.",
            stream_labels,
            namespace=namespace,
            registry=registry,
        )
        self.streams_closed = Counter(
            "streams_closed",
            "Streams that ended, by outcome (completed, error, closed early).",
            (*stream_labels, "outcome"),
            namespace=namespace,
            registry=registry,
        )
        self.items_sent_total = Counter(
            "items_sent",
            "Items written to clients.",
            stream_labels,
            namespace=namespace,
            registry=registry,
        )
        self.bytes_sent_total = Counter(
            "bytes_sent",
            "Body bytes written to clients.",
            stream_labels,
            namespace=namespace,
            registry=registry,
        )
        self.items_dropped_total = Counter(
            "items_dropped",
            "Items a bounded buffer dropped (sliding or dropping strategy).",
            stream_labels,
            namespace=namespace,
            registry=registry,
        )
        self.stream_duration = Histogram(
            "stream_duration_seconds",
            "Time from a stream's first iteration to its end.",
            stream_labels,
            namespace=namespace,
            registry=registry,
            buckets=tuple(duration_buckets),
        )
        self.circuit_state = Gauge(
            "circuit_state",
            "1 for each circuit breaker's current state, 0 for its other states.",
            ("name", "state"),
            namespace=namespace,
            registry=registry,
        )
        self.broadcast_events = Counter(
            "broadcast_events",
            "A broadcast hub's figures: published, replayed, resets, overflows.",
            ("name", "figure"),
            namespace=namespace,
            registry=registry,
        )
        self.broadcast_up = Gauge(
            "broadcast_up",
            "1 while a broadcast hub's backend is healthy, else 0.",
            ("name",),
            namespace=namespace,
            registry=registry,
        )
        self._children: dict[tuple[str, str], _StreamChildren] = {}

    def _stream(self, kind: str, name: str) -> _StreamChildren:
        children = self._children.get((kind, name))
        if children is None:
            children = self._children[kind, name] = _StreamChildren(
                self.active_streams.labels(kind, name),
                self.items_sent_total.labels(kind, name),
                self.bytes_sent_total.labels(kind, name),
                self.items_dropped_total.labels(kind, name),
                self.stream_duration.labels(kind, name),
            )
        return children

    def stream_opened(self, kind: str, name: str) -> None:
        self._stream(kind, name).active.inc()

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        children = self._stream(kind, name)
        children.active.dec()
        children.duration.observe(duration)
        self.streams_closed.labels(kind, name, outcome).inc()

    def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None:
        children = self._stream(kind, name)
        if items:
            children.items.inc(items)
        if nbytes:
            children.bytes.inc(nbytes)

    def items_dropped(self, kind: str, name: str, items: int) -> None:
        self._stream(kind, name).dropped.inc(items)

    def circuit_changed(self, name: str, old: str, new: str) -> None:
        for state in CIRCUIT_STATES:
            self.circuit_state.labels(name, state).set(1 if state == new else 0)

    def broadcast_counted(self, name: str, figure: BroadcastFigure, count: int) -> None:
        self.broadcast_events.labels(name, figure).inc(count)

    def broadcast_health(self, name: str, healthy: bool) -> None:
        self.broadcast_up.labels(name).set(1 if healthy else 0)
