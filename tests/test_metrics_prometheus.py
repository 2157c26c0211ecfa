"""The Prometheus exporter, read back the way Prometheus reads it: the text format,
parsed with prometheus-client's own parser, after driving real metered streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamfx import BufferPolicy, CircuitBreaker, CircuitOpenError, circuit
from streamfx._response.engine import encode_batches
from streamfx.metrics import FanOut, InMemoryMetrics, metered
from streamfx.metrics.prometheus import PrometheusMetrics
from tests._sources import Probe, counting, forever

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> tuple[dict[str, str], Samples]:
    """Metric family name -> type, and every sample keyed by (name, labels)."""
    text = generate_latest(registry).decode()
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return types, samples


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


async def chunks(*sizes: int) -> AsyncIterator[bytes]:
    for size in sizes:
        yield b"x" * size


def test_names_and_types_follow_prometheus_conventions() -> None:
    registry = CollectorRegistry()
    hook = PrometheusMetrics(registry)
    hook.stream_opened("sse", "jobs")
    hook.circuit_changed("db", "closed", "open")
    types, _ = scrape(registry)
    # the classic text format shows each counter's and histogram's creation time as a
    # separate "<name>_created" gauge; it is not one of ours
    assert {name: kind for name, kind in types.items() if not name.endswith("_created")} == {
        "streamfx_active_streams": "gauge",
        "streamfx_streams_closed": "counter",
        "streamfx_items_sent": "counter",
        "streamfx_bytes_sent": "counter",
        "streamfx_items_dropped": "counter",
        "streamfx_stream_duration_seconds": "histogram",
        "streamfx_circuit_state": "gauge",
        "streamfx_broadcast_events": "counter",
        "streamfx_broadcast_up": "gauge",
    }


def test_broadcast_figures_and_health_are_exported() -> None:
    registry = CollectorRegistry()
    hook = PrometheusMetrics(registry)
    hook.broadcast_counted("jobs", "published", 3)
    hook.broadcast_counted("jobs", "resets", 1)
    hook.broadcast_health("jobs", False)
    _, samples = scrape(registry)
    assert samples["streamfx_broadcast_events_total", labels(name="jobs", figure="published")] == 3
    assert samples["streamfx_broadcast_events_total", labels(name="jobs", figure="resets")] == 1
    assert samples["streamfx_broadcast_up", labels(name="jobs")] == 0
    hook.broadcast_health("jobs", True)
    assert scrape(registry)[1]["streamfx_broadcast_up", labels(name="jobs")] == 1


async def test_metered_streams_move_the_counters() -> None:
    registry = CollectorRegistry()
    hook = PrometheusMetrics(registry)
    for _ in range(2):
        assert [c async for c in metered(chunks(3, 5, 7), "export", "rows", metrics=hook)]
    with pytest.raises(RuntimeError):
        async for _ in metered(counting(5, Probe(), fail_at=2), "sse", "jobs", metrics=hook):
            pass
    open_stream = metered(forever(Probe()), "sse", "jobs", metrics=hook)
    await anext(open_stream)

    _, samples = scrape(registry)
    export, jobs = labels(kind="export", name="rows"), labels(kind="sse", name="jobs")
    assert samples["streamfx_items_sent_total", export] == 6
    assert samples["streamfx_bytes_sent_total", export] == 30
    assert samples["streamfx_items_dropped_total", export] == 0
    assert samples["streamfx_active_streams", export] == 0
    assert samples["streamfx_active_streams", jobs] == 1
    assert samples["streamfx_items_sent_total", jobs] == 3  # two before the error + one
    assert samples["streamfx_bytes_sent_total", jobs] == 0  # ints carry no byte size
    assert samples["streamfx_streams_closed_total", export | {("outcome", "completed")}] == 2
    assert samples["streamfx_streams_closed_total", jobs | {("outcome", "error")}] == 1
    assert samples["streamfx_stream_duration_seconds_count", export] == 2
    assert samples["streamfx_stream_duration_seconds_bucket", export | {("le", "+Inf")}] == 2
    assert samples["streamfx_stream_duration_seconds_sum", export] >= 0

    await open_stream.aclose()
    _, samples = scrape(registry)
    assert samples["streamfx_active_streams", jobs] == 0
    assert samples["streamfx_streams_closed_total", jobs | {("outcome", "closed")}] == 1
    assert samples["streamfx_stream_duration_seconds_count", jobs] == 2


async def test_dropped_items_match_what_the_buffer_dropped() -> None:
    registry = CollectorRegistry()
    prometheus, memory = PrometheusMetrics(registry), InMemoryMetrics()
    seen_dropped: list[int] = []

    async def fast() -> AsyncIterator[int]:
        for i in range(200):
            yield i

    body = encode_batches(
        fast(),
        BufferPolicy(2, "dropping"),
        lambda batch: b"".join(b"%d\n" % i for i in batch),
        kind="sse",
        name="ticks",
        on_drop=seen_dropped.append,
        metrics=FanOut(prometheus, memory),
    )
    async for _ in body:
        await asyncio.sleep(0)  # a slow consumer: the producer overruns the buffer

    _, samples = scrape(registry)
    ticks = labels(kind="sse", name="ticks")
    assert seen_dropped, "the scenario must actually drop items"
    assert samples["streamfx_items_dropped_total", ticks] == len(seen_dropped)
    assert samples["streamfx_items_dropped_total", ticks] == memory.dropped["sse", "ticks"]
    assert samples["streamfx_items_sent_total", ticks] == 200 - len(seen_dropped)
    assert samples["streamfx_bytes_sent_total", ticks] == memory.bytes["sse", "ticks"]


async def test_circuit_state_gauge_follows_the_breaker() -> None:
    registry = CollectorRegistry()
    now = [0.0]
    breaker = CircuitBreaker(
        1, 10.0, name="db", metrics=PrometheusMetrics(registry), clock=lambda: now[0]
    )
    with pytest.raises(RuntimeError):
        async for _ in circuit(counting(3, Probe(), fail_at=0), breaker):
            pass
    with pytest.raises(CircuitOpenError):
        async for _ in circuit(counting(3, Probe()), breaker):
            pass

    def state_of(samples: Samples) -> dict[str, float]:
        return {
            state: samples["streamfx_circuit_state", labels(name="db", state=state)]
            for state in ("closed", "open", "half_open")
        }

    assert state_of(scrape(registry)[1]) == {"closed": 0, "open": 1, "half_open": 0}
    now[0] = 11.0
    assert breaker.state == "half_open"
    assert state_of(scrape(registry)[1]) == {"closed": 0, "open": 0, "half_open": 1}


def test_custom_registry_namespace_and_duplicates() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusMetrics(registry)
    other = CollectorRegistry()
    hook = PrometheusMetrics(other, namespace="myapp")
    hook.items_sent("export", "rows", 4, 40)
    types, samples = scrape(other)
    assert "myapp_items_sent" in types
    assert samples["myapp_bytes_sent_total", labels(kind="export", name="rows")] == 40
    assert not any(name.startswith("myapp") for name in scrape(registry)[0])
