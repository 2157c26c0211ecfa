"""A tour of the streamfx core combinators, printed to the terminal.

Run with ``make demo``. Each section shows one promise: bounded buffers and what each
strategy keeps, heartbeats filling silences, merge, cleanup that always runs, the
circuit breaker refusing to start streams against a failing source, and progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import streamfx
from streamfx.metrics import InMemoryMetrics, metered


async def numbers(n: int, delay: float = 0.0) -> AsyncIterator[int]:
    for i in range(n):
        if delay:
            await asyncio.sleep(delay)
        yield i


async def slow_consumer(stream: AsyncIterator[int], pause: float) -> list[int]:
    out = []
    async for item in stream:
        out.append(item)
        await asyncio.sleep(pause)
    return out


async def show_strategies() -> None:
    print("== buffer(capacity=4): a producer of 20 items, 1 ms apart; a consumer 5x slower")
    for strategy in ("suspend", "sliding", "dropping"):
        dropped: list[int] = []
        stream = streamfx.buffer(numbers(20, 0.001), 4, strategy, on_drop=dropped.append)
        got = await slow_consumer(stream, 0.005)
        print(f"  {strategy:9} kept {len(got):2} {got}  dropped {len(dropped)}")


async def show_heartbeat() -> None:
    print("== heartbeat(interval=0.05): beats fill the silences, never a busy stream")

    async def bursty() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        await asyncio.sleep(0.16)
        yield "c"

    print("  ", [item async for item in streamfx.heartbeat(bursty(), 0.05, ":keep-alive")])


async def show_merge_and_cleanup() -> None:
    print("== merge + ensuring: an early stop still runs every finalizer, once")
    log: list[str] = []
    left = streamfx.ensuring(numbers(1000, 0.001), lambda: log.append("left closed"))
    right = streamfx.ensuring(numbers(1000, 0.001), lambda: log.append("right closed"))
    merged = streamfx.merge(left, right)
    taken = []
    async for item in merged:
        taken.append(item)
        if len(taken) == 6:
            break
    await merged.aclose()
    print(f"   took {taken}, then: {log}")


async def show_circuit() -> None:
    print("== circuit: two failing streams open it; the third is refused before it starts")
    breaker = streamfx.CircuitBreaker(failure_threshold=2, reset_timeout=0.1, name="upstream")
    breaker.add_listener(lambda _b, old, new: print(f"   state {old} -> {new}"))

    async def flaky() -> AsyncIterator[int]:
        yield 1
        raise ConnectionError("upstream went away")

    for attempt in range(3):
        try:
            async for _ in streamfx.circuit(flaky(), breaker):
                pass
        except (ConnectionError, streamfx.CircuitOpenError) as exc:
            print(f"   attempt {attempt + 1}: {type(exc).__name__}: {exc}")
    await asyncio.sleep(0.12)
    async for _ in streamfx.circuit(numbers(3), breaker):
        pass
    print(f"   after the timeout a healthy trial stream closes it: {breaker.state}")


async def show_progress_and_metrics() -> None:
    print("== progress + metrics")
    metrics = InMemoryMetrics()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10_000):
            yield b"x" * 100

    stream = metered(
        streamfx.progress(
            chunks(), lambda p: print(f"   {p.count:>6} items {p.bytes:>9} bytes"), every=2500
        ),
        "export",
        "demo",
        metrics=metrics,
    )
    async for _ in stream:
        pass
    key = ("export", "demo")
    items, nbytes, active = metrics.items[key], metrics.bytes[key], metrics.active[key]
    print(f"   metrics: items={items} bytes={nbytes} active={active}")


async def main() -> None:
    await show_strategies()
    await show_heartbeat()
    await show_merge_and_cleanup()
    await show_circuit()
    await show_progress_and_metrics()


if __name__ == "__main__":
    asyncio.run(main())
