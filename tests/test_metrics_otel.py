"""The OpenTelemetry exporter, read back through the SDK's in-memory reader after
driving real metered streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)

from streamfx import CircuitBreaker, circuit
from streamfx.metrics import metered
from streamfx.metrics.otel import OpenTelemetryMetrics
from tests._sources import Probe, counting, forever

Attrs = frozenset[tuple[str, object]]


@dataclass
class Collected:
    units: dict[str, str]
    numbers: dict[tuple[str, Attrs], float]
    histograms: dict[tuple[str, Attrs], HistogramDataPoint]


@dataclass
class Setup:
    reader: InMemoryMetricReader
    hook: OpenTelemetryMetrics

    def collect(self) -> Collected:
        collected = Collected({}, {}, {})
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "streamfx"
                for metric in scope.metrics:
                    collected.units[metric.name] = metric.unit or ""
                    for point in metric.data.data_points:
                        key = (metric.name, frozenset((point.attributes or {}).items()))
                        if isinstance(point, NumberDataPoint):
                            collected.numbers[key] = point.value
                        else:
                            assert isinstance(point, HistogramDataPoint)
                            collected.histograms[key] = point
        return collected


@pytest.fixture
def otel() -> Iterator[Setup]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield Setup(reader, OpenTelemetryMetrics(provider))
    provider.shutdown()


def stream(kind: str, name: str, **more: str) -> Attrs:
    pairs: dict[str, object] = {"streamfx.stream.kind": kind, "streamfx.stream.name": name}
    pairs.update({f"streamfx.stream.{key}": value for key, value in more.items()})
    return frozenset(pairs.items())


async def chunks(*sizes: int) -> AsyncIterator[bytes]:
    for size in sizes:
        yield b"x" * size


async def test_metered_streams_move_the_instruments(otel: Setup) -> None:
    for _ in range(2):
        assert [c async for c in metered(chunks(3, 5, 7), "export", "rows", metrics=otel.hook)]
    with pytest.raises(RuntimeError):
        async for _ in metered(counting(5, Probe(), fail_at=2), "sse", "jobs", metrics=otel.hook):
            pass
    still_open = metered(forever(Probe()), "sse", "jobs", metrics=otel.hook)
    await anext(still_open)

    got = otel.collect()
    export, jobs = stream("export", "rows"), stream("sse", "jobs")
    assert got.numbers["streamfx.items.sent", export] == 6
    assert got.numbers["streamfx.bytes.sent", export] == 30
    assert got.numbers["streamfx.streams.active", export] == 0
    assert got.numbers["streamfx.streams.active", jobs] == 1
    assert got.numbers["streamfx.items.sent", jobs] == 3
    assert (
        got.numbers["streamfx.streams.closed", stream("export", "rows", outcome="completed")] == 2
    )
    assert got.numbers["streamfx.streams.closed", stream("sse", "jobs", outcome="error")] == 1
    durations = got.histograms[
        "streamfx.stream.duration", stream("export", "rows", outcome="completed")
    ]
    assert durations.count == 2
    assert durations.sum >= 0
    assert list(durations.explicit_bounds)[:3] == [0.01, 0.05, 0.1]

    await still_open.aclose()
    got = otel.collect()
    assert got.numbers["streamfx.streams.active", jobs] == 0
    assert got.numbers["streamfx.streams.closed", stream("sse", "jobs", outcome="closed")] == 1


def test_names_and_units_follow_opentelemetry_conventions(otel: Setup) -> None:
    otel.hook.stream_opened("sse", "jobs")
    otel.hook.items_sent("sse", "jobs", 2, 20)
    otel.hook.items_dropped("sse", "jobs", 1)
    otel.hook.stream_closed("sse", "jobs", 0.5, "completed")
    otel.hook.circuit_changed("db", "closed", "open")
    got = otel.collect()
    assert got.units == {
        "streamfx.streams.active": "{stream}",
        "streamfx.streams.closed": "{stream}",
        "streamfx.items.sent": "{item}",
        "streamfx.bytes.sent": "By",
        "streamfx.items.dropped": "{item}",
        "streamfx.stream.duration": "s",
        "streamfx.circuit.state": "{state}",
    }
    assert got.numbers["streamfx.items.dropped", stream("sse", "jobs")] == 1


def test_broadcast_figures_and_health_are_reported(otel: Setup) -> None:
    otel.hook.broadcast_counted("jobs", "published", 3)
    otel.hook.broadcast_health("jobs", True)
    got = otel.collect()
    figure = {"streamfx.broadcast.name": "jobs", "streamfx.broadcast.figure": "published"}
    assert got.numbers["streamfx.broadcast.events", frozenset(figure.items())] == 3
    hub = frozenset({"streamfx.broadcast.name": "jobs"}.items())
    assert got.numbers["streamfx.broadcast.up", hub] == 1
    otel.hook.broadcast_health("jobs", False)
    assert otel.collect().numbers["streamfx.broadcast.up", hub] == 0
    assert got.units["streamfx.broadcast.events"] == "{event}"


async def test_circuit_state_gauge_follows_the_breaker(otel: Setup) -> None:
    now = [0.0]
    breaker = CircuitBreaker(1, 10.0, name="db", metrics=otel.hook, clock=lambda: now[0])
    with pytest.raises(RuntimeError):
        async for _ in circuit(counting(3, Probe(), fail_at=0), breaker):
            pass

    def states() -> dict[object, float]:
        return {
            dict(attrs)["streamfx.circuit.state"]: value
            for (name, attrs), value in otel.collect().numbers.items()
            if name == "streamfx.circuit.state" and dict(attrs)["streamfx.circuit.name"] == "db"
        }

    assert states() == {"closed": 0, "open": 1, "half_open": 0}
    now[0] = 11.0
    assert breaker.state == "half_open"
    assert states() == {"closed": 0, "open": 0, "half_open": 1}


def test_without_an_sdk_the_hook_is_a_harmless_no_op() -> None:
    from opentelemetry.metrics import NoOpMeterProvider

    hook = OpenTelemetryMetrics(NoOpMeterProvider())
    hook.stream_opened("sse", "x")
    hook.items_sent("sse", "x", 1, 1)
    hook.items_dropped("sse", "x", 1)
    hook.stream_closed("sse", "x", 0.1, "completed")
    hook.circuit_changed("x", "closed", "open")
