from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import streamfx
from streamfx.metrics import InMemoryMetrics
from tests._sources import Probe, counting, forever


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def failing() -> AsyncIterator[int]:
    yield 1
    raise ConnectionError("upstream down")


async def run(stream: AsyncIterator[int]) -> list[int]:
    return [x async for x in stream]


def make(clock: Clock, **kwargs: object) -> tuple[streamfx.CircuitBreaker, InMemoryMetrics]:
    metrics = InMemoryMetrics()
    breaker = streamfx.CircuitBreaker(
        failure_threshold=2,
        reset_timeout=10,
        name="db",
        clock=clock,
        metrics=metrics,
        **kwargs,  # type: ignore[arg-type]
    )
    return breaker, metrics


async def test_opens_after_consecutive_failures_and_refuses_before_pulling() -> None:
    breaker, metrics = make(Clock())
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await run(streamfx.circuit(failing(), breaker))
    assert breaker.state == "open"
    probe = Probe()
    with pytest.raises(streamfx.CircuitOpenError) as info:
        await run(streamfx.circuit(counting(3, probe), breaker))
    assert not probe.started
    assert info.value.retry_after == pytest.approx(10)
    assert "db" in str(info.value)
    assert metrics.circuit == {"db": "open"}


async def test_a_success_resets_the_failure_count() -> None:
    breaker, _ = make(Clock())
    with pytest.raises(ConnectionError):
        await run(streamfx.circuit(failing(), breaker))
    assert await run(streamfx.circuit(counting(2, Probe()), breaker)) == [0, 1]
    with pytest.raises(ConnectionError):
        await run(streamfx.circuit(failing(), breaker))
    assert breaker.state == "closed"


async def test_half_open_admits_limited_trials_and_a_success_closes_it() -> None:
    clock = Clock()
    breaker, metrics = make(clock)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await run(streamfx.circuit(failing(), breaker))
    clock.now = 10.0
    trial = streamfx.circuit(forever(Probe()), breaker)
    await anext(trial)  # the one trial slot is taken
    assert breaker.state == "half_open"
    with pytest.raises(streamfx.CircuitOpenError):
        await run(streamfx.circuit(counting(1, Probe()), breaker))
    await trial.aclose()  # an early close is neither success nor failure: the slot is free again
    assert breaker.state == "half_open"
    assert await run(streamfx.circuit(counting(1, Probe()), breaker)) == [0]
    assert str(breaker.state) == "closed"
    assert metrics.transitions == [
        ("db", "closed", "open"),
        ("db", "open", "half_open"),
        ("db", "half_open", "closed"),
    ]


async def test_a_failed_trial_reopens_it() -> None:
    clock = Clock()
    breaker, _ = make(clock)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await run(streamfx.circuit(failing(), breaker))
    clock.now = 10.0
    with pytest.raises(ConnectionError):
        await run(streamfx.circuit(failing(), breaker))
    assert breaker.state == "open"
    clock.now = 15.0
    with pytest.raises(streamfx.CircuitOpenError) as info:
        await run(streamfx.circuit(counting(1, Probe()), breaker))
    assert info.value.retry_after == pytest.approx(5)


async def test_excluded_errors_and_cancellation_do_not_count() -> None:
    breaker, _ = make(Clock(), exclude=(LookupError,))

    async def not_found() -> AsyncIterator[int]:
        raise KeyError("missing")
        yield 0

    for _ in range(3):
        with pytest.raises(KeyError):
            await run(streamfx.circuit(not_found(), breaker))
    started = asyncio.Event()

    async def consume() -> None:
        async def slow() -> AsyncIterator[int]:
            started.set()
            await asyncio.sleep(10)
            yield 0

        await run(streamfx.circuit(slow(), breaker))

    for _ in range(3):
        started.clear()
        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert breaker.state == "closed"
    assert breaker.failures == 0


async def test_listeners_see_every_change() -> None:
    changes: list[tuple[str, str]] = []
    breaker, _ = make(Clock())
    breaker.add_listener(lambda _b, old, new: changes.append((old, new)))
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await run(streamfx.circuit(failing(), breaker))
    assert changes == [("closed", "open")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"failure_threshold": 1.5},
        {"reset_timeout": 0},
        {"reset_timeout": float("inf")},
        {"half_open_max": 0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        streamfx.CircuitBreaker(**kwargs)  # type: ignore[arg-type]
