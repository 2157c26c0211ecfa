from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from streamfx import BufferPolicy, CircuitBreaker, SSEDecoder, export, sse
from streamfx.metrics import (
    FanOut,
    InMemoryMetrics,
    NullMetrics,
    Outcome,
    get_metrics,
    guarded,
    metered,
    reports_items,
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


# -- a hook that raises never breaks a stream (issue 15, item 6) ----------------------

HOOK_METHODS = ["stream_opened", "items_sent", "items_dropped", "stream_closed"]


class Raising(NullMetrics):
    """A hook whose `method` raises; it counts the calls of every method."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.calls: dict[str, int] = {}

    def _called(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        if method == self.method:
            raise RuntimeError(f"{method} is broken")

    def stream_opened(self, kind: str, name: str) -> None:
        self._called("stream_opened")

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        self._called("stream_closed")

    def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None:
        self._called("items_sent")

    def items_dropped(self, kind: str, name: str, items: int) -> None:
        self._called("items_dropped")

    def circuit_changed(self, name: str, old: str, new: str) -> None:
        self._called("circuit_changed")


def hook_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "streamfx.metrics" and r.levelno >= logging.ERROR
    ]


async def stalled_then_drained(
    body: AsyncIterator[bytes], go: asyncio.Event, sent: asyncio.Event
) -> list[bytes]:
    """Take the first chunk (the opening comment), hold the body (the client is away,
    so the buffer drops) until the source has produced everything, then read the rest."""
    chunks = [await anext(body)]
    go.set()
    await sent.wait()
    return chunks + [chunk async for chunk in body]


@pytest.mark.parametrize("method", HOOK_METHODS)
async def test_a_raising_hook_never_breaks_an_sse_stream(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    hook = Raising(method)
    previous = set_metrics(hook)
    try:
        for _ in range(3):  # three streams, many batches: one log record in all
            go, sent = asyncio.Event(), asyncio.Event()

            async def events(
                go: asyncio.Event = go, sent: asyncio.Event = sent
            ) -> AsyncIterator[str]:
                yield "first"
                await go.wait()
                for index in range(20):
                    yield str(index)
                sent.set()

            body = sse(events(), buffer=BufferPolicy(2, "sliding"), heartbeat=None).body
            chunks = await stalled_then_drained(aiter(body), go, sent)
            data = [event.data for event in SSEDecoder().feed(b"".join(chunks))]
            # The client was away for the whole burst: a sliding buffer of 2 kept the
            # newest 2 and dropped the rest, "first" included.
            assert data == ["18", "19"]
    finally:
        set_metrics(previous)
    assert hook.calls[method] >= 3, "the hook is still called after it raised"
    records = hook_errors(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert method in records[0].getMessage() and records[0].exc_info is not None


async def test_a_raising_stream_closed_leaves_an_export_complete(
    caplog: pytest.LogCaptureFixture,
) -> None:
    previous = set_metrics(Raising("stream_closed"))
    try:
        rows = [{"n": index} for index in range(100)]
        body = b"".join([chunk async for chunk in export(iter(rows), "ndjson").body])
    finally:
        set_metrics(previous)
    assert body.decode().splitlines() == [f'{{"n":{index}}}' for index in range(100)]
    assert len(hook_errors(caplog)) == 1


async def test_metered_and_an_explicit_hook_are_guarded_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = Raising("items_sent")
    for _ in range(2):
        stream = metered(counting(3, Probe()), "k", "n", metrics=hook)
        assert [x async for x in stream] == [0, 1, 2]
    assert hook.calls["items_sent"] == 6
    assert len(hook_errors(caplog)) == 1


def test_a_raising_circuit_hook_or_listener_never_stops_a_breaker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = Raising("circuit_changed")
    breaker = CircuitBreaker(failure_threshold=1, name="db", metrics=hook)
    seen: list[str] = []

    def broken(_breaker: CircuitBreaker, old: str, new: str) -> None:
        raise RuntimeError("listener is broken")

    breaker.add_listener(broken)
    breaker.add_listener(lambda _breaker, old, new: seen.append(new))
    breaker.after_stream(breaker.before_stream(), RuntimeError("source failed"), False)
    assert breaker.state == "open"
    assert seen == ["open"], "the listeners after the broken one still hear of it"
    assert len(hook_errors(caplog)) == 1
    listener_errors = [r for r in caplog.records if "listener" in r.getMessage()]
    assert len(listener_errors) == 1 and listener_errors[0].levelno == logging.ERROR


async def test_fan_out_reports_to_the_hooks_after_one_that_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorded = InMemoryMetrics()
    hook = FanOut(Raising("items_sent"), recorded)
    assert [c async for c in metered(bytes_source(), "export", "rows", metrics=hook)]
    assert recorded.items["export", "rows"] == 3
    assert recorded.outcomes["export", "rows", "completed"] == 1
    assert len(hook_errors(caplog)) == 1


def test_guarded_leaves_the_silent_default_as_it_is() -> None:
    hook = NullMetrics()
    assert guarded(hook) is hook
    wrapped = guarded(InMemoryMetrics())
    assert guarded(wrapped) is wrapped


def test_reports_items_is_false_only_for_the_null_hooks_items_sent() -> None:
    """Streams skip the per-chunk ``items_sent`` call exactly when it is the no-op."""

    class CountsStreamsOnly(NullMetrics):
        def stream_opened(self, kind: str, name: str) -> None:
            pass

    class CountsItems(NullMetrics):
        def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None:
            pass

    assert not reports_items(NullMetrics())
    assert not reports_items(CountsStreamsOnly())
    assert not reports_items(guarded(CountsStreamsOnly()))
    assert reports_items(CountsItems())
    assert reports_items(guarded(CountsItems()))
    assert reports_items(guarded(InMemoryMetrics()))
