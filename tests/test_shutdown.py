"""Streams end on purpose when a shutdown is requested: SSE drains and says goodbye;
exports are left to finish (ending them early would fake a complete file)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

import streamfx
from streamfx import BufferPolicy
from streamfx._response.engine import encode_batches
from streamfx.metrics import InMemoryMetrics
from tests._sources import Probe


@pytest.fixture(autouse=True)
def clean_flag() -> Iterator[None]:
    streamfx.reset_shutdown()
    yield
    streamfx.reset_shutdown()


async def endless(probe: Probe, release: asyncio.Event) -> AsyncIterator[str]:
    probe.started = True
    try:
        yield "first"
        yield "second"
        await release.wait()  # never set: this source would run forever
        yield "never"
    finally:
        probe.cleanups += 1


async def test_sse_sends_what_it_holds_then_the_farewell_and_ends() -> None:
    probe = Probe()
    metrics = InMemoryMetrics()
    previous = streamfx.metrics.set_metrics(metrics)
    try:
        farewell = streamfx.ServerSentEvent(event="shutdown", data="bye", retry=5000)
        body = streamfx.sse(endless(probe, asyncio.Event()), farewell=farewell, heartbeat=None).body
        chunks: list[bytes] = []
        async for chunk in body:
            chunks.append(chunk)
            if b"second" in b"".join(chunks):
                streamfx.request_shutdown()
    finally:
        streamfx.metrics.set_metrics(previous)
    events = streamfx.SSEDecoder().feed(b"".join(chunks))
    assert [e.data for e in events] == ["first", "second", "bye"]
    assert events[-1].event == "shutdown"
    assert probe.cleanups == 1
    assert metrics.outcomes[("sse", "", "completed")] == 1


def request_in_thread() -> None:
    thread = threading.Thread(target=streamfx.request_shutdown)
    thread.start()
    thread.join()


@pytest.mark.parametrize("request_it", [streamfx.request_shutdown, request_in_thread])
async def test_a_waiting_stream_wakes_up_and_ends(request_it: Callable[[], None]) -> None:
    """Whether requested on the loop or from another thread (as a signal handler or a
    WSGI server's thread would), a stream blocked on a silent source ends promptly."""
    probe = Probe()
    body = streamfx.sse(endless(probe, asyncio.Event()), heartbeat=None).body
    received: list[bytes] = []
    both_seen = asyncio.Event()

    async def read() -> None:
        async for chunk in body:
            received.append(chunk)
            if b"second" in b"".join(received):
                both_seen.set()

    reader = asyncio.create_task(read())
    await both_seen.wait()
    request_it()
    await asyncio.wait_for(reader, 5)
    assert [e.data for e in streamfx.SSEDecoder().feed(b"".join(received))] == ["first", "second"]
    assert probe.cleanups == 1


async def test_a_stream_started_after_the_request_ends_at_once() -> None:
    streamfx.request_shutdown()
    probe = Probe()
    chunks = [c async for c in streamfx.sse(endless(probe, asyncio.Event()), heartbeat=None).body]
    assert streamfx.SSEDecoder().feed(b"".join(chunks)) == []
    assert probe.cleanups <= 1


async def test_bodies_without_a_farewell_are_not_cut_short() -> None:
    """Exports and downloads are built this way: a shutdown must not truncate them."""
    release = asyncio.Event()

    async def rows() -> AsyncIterator[int]:
        yield 1
        await release.wait()
        yield 2

    def encode(batch: list[int]) -> bytes:
        return b"".join(b"%d\n" % n for n in batch)

    body = encode_batches(rows(), BufferPolicy(4), encode, kind="export", finish=lambda: b"end")
    first = await anext(body)
    streamfx.request_shutdown()
    release.set()
    rest = [chunk async for chunk in body]
    assert b"".join([first, *rest]) == b"1\n2\nend"


def test_drain_on_signals_requests_then_chains_to_the_previous_handler() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        streamfx.drain_on_signals(signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert streamfx.shutdown_requested()
        assert seen == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


async def test_a_closed_stream_leaves_no_shutdown_listener_behind() -> None:
    """Each open SSE body is one listener, removed when the body closes, however many
    bodies come and go (the listener is the channel's own `wake`)."""
    from streamfx._core import shutdown

    before = len(shutdown._listeners)
    bodies = [aiter(streamfx.sse(endless(Probe(), asyncio.Event())).body) for _ in range(3)]
    for body in bodies:
        await anext(body)  # the opening comment: the body runs
    assert len(shutdown._listeners) == before + 3
    for body in bodies:
        await body.aclose()  # type: ignore[attr-defined]
    assert len(shutdown._listeners) == before
