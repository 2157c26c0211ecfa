from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from streamfx.metrics import (
    FanOut,
    InMemoryMetrics,
    NullMetrics,
    get_metrics,
    metered,
    set_metrics,
)
from tests._sources import Probe, counting, forever


async def bytes_source() -> AsyncIterator[bytes]:
    for size in (3, 5, 7):
        yield b"x" * size


async def test_metered_reports_items_bytes_and_one_close() -> None:
    m = InMemoryMetrics()
    assert [x async for x in metered(bytes_source(), "export", "rows", metrics=m)] == [
        b"xxx",
        b"xxxxx",
        b"xxxxxxx",
    ]
    key = ("export", "rows")
    assert (m.opened[key], m.active[key], m.items[key], m.bytes[key]) == (1, 0, 3, 15)
    assert m.outcomes[("export", "rows", "completed")] == 1
    assert len(m.durations[key]) == 1


async def test_outcomes_for_error_and_early_close() -> None:
    m = InMemoryMetrics()
    with pytest.raises(RuntimeError):
        async for _ in metered(counting(5, Probe(), fail_at=1), "sse", "a", metrics=m):
            pass
    stream = metered(forever(Probe()), "sse", "b", metrics=m)
    await anext(stream)
    assert m.active[("sse", "b")] == 1
    await stream.aclose()
    assert m.outcomes[("sse", "a", "error")] == 1
    assert m.outcomes[("sse", "b", "closed")] == 1
    assert m.total("active") == 0


async def test_the_process_wide_hook_is_used_by_default() -> None:
    m = InMemoryMetrics()
    previous = set_metrics(m)
    try:
        assert get_metrics() is m
        [x async for x in metered(counting(4, Probe()), "k", "n")]
    finally:
        set_metrics(previous)
    assert isinstance(get_metrics(), NullMetrics)
    assert m.items[("k", "n")] == 4


def test_fan_out_skips_hooks_without_the_broadcast_methods() -> None:
    class StreamsOnly(NullMetrics):
        broadcast_counted = None  # type: ignore[assignment]
        broadcast_health = None  # type: ignore[assignment]

    recorded = InMemoryMetrics()
    hook = FanOut(StreamsOnly(), recorded)
    hook.broadcast_counted("hub", "resets", 1)
    hook.broadcast_health("hub", True)
    assert recorded.broadcast["hub", "resets"] == 1
    assert recorded.broadcast_healthy == {"hub": True}


async def test_fan_out_reports_everything_to_every_hook() -> None:
    first, second = InMemoryMetrics(), InMemoryMetrics()
    hook = FanOut(first, second)
    assert [c async for c in metered(bytes_source(), "export", "rows", metrics=hook)]
    hook.items_dropped("sse", "feed", 2)
    hook.circuit_changed("db", "closed", "open")
    hook.broadcast_counted("hub", "published", 2)
    hook.broadcast_health("hub", False)
    for m in (first, second):
        assert m.broadcast["hub", "published"] == 2
        assert m.broadcast_healthy == {"hub": False}
        assert (m.opened["export", "rows"], m.items["export", "rows"]) == (1, 3)
        assert m.bytes["export", "rows"] == 15
        assert m.outcomes["export", "rows", "completed"] == 1
        assert m.dropped["sse", "feed"] == 2
        assert m.transitions == [("db", "closed", "open")]
    assert first.durations == second.durations
