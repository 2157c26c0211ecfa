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
from streamfx._core import shutdown as shutdown_module
from streamfx._response.engine import encode_batches
from streamfx.testing import capture_metrics, open_response
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
    farewell = streamfx.ServerSentEvent(event="shutdown", data="bye", retry=5000)
    with capture_metrics() as metrics:
        response = streamfx.sse(endless(probe, asyncio.Event()), farewell=farewell, heartbeat=None)
        async with open_response(response) as client:
            assert [e.data for e in await client.events(2)] == ["first", "second"]
            streamfx.request_shutdown()
            events = await client.events()  # to the end of the body
            assert client.ended
    assert [(e.event, e.data) for e in events] == [("shutdown", "bye")]
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
    response = streamfx.sse(endless(probe, asyncio.Event()), heartbeat=None)
    async with open_response(response) as client:
        assert [e.data for e in await client.events(2)] == ["first", "second"]
        request_it()
        assert await client.events() == []
        assert client.ended
        assert probe.cleanups == 1, "ended by the request, not by leaving the block"


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


# -- the drain chained to the server's handlers by the first stream (zero configuration) --


@pytest.fixture
def server_handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """A server's own SIGINT and SIGTERM handlers (recording the signals they see),
    with the automatic drain as it is by default; everything is put back after."""
    monkeypatch.setattr(shutdown_module, "_auto_drain", None)
    monkeypatch.delenv("STREAMFX_AUTO_DRAIN", raising=False)
    seen: list[int] = []
    saved = {signum: signal.getsignal(signum) for signum in DRAINED}
    for signum in DRAINED:
        signal.signal(signum, lambda signum, frame: seen.append(signum))
    try:
        yield seen
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


DRAINED = (signal.SIGINT, signal.SIGTERM)


async def start_a_stream() -> None:
    response = streamfx.sse(endless(Probe(), asyncio.Event()), heartbeat=None)
    async with open_response(response) as client:
        await client.events(1)


@pytest.mark.parametrize("signum", DRAINED)
async def test_the_first_stream_chains_the_drain_to_the_servers_handler(
    server_handlers: list[int], signum: int
) -> None:
    await start_a_stream()
    os.kill(os.getpid(), signum)
    assert streamfx.shutdown_requested()
    assert server_handlers == [signum], "the server's handler still runs, once"


async def test_the_drain_is_chained_once(server_handlers: list[int]) -> None:
    await start_a_stream()
    chained = signal.getsignal(signal.SIGTERM)
    await start_a_stream()
    assert signal.getsignal(signal.SIGTERM) is chained
    streamfx.drain_on_signals()
    assert signal.getsignal(signal.SIGTERM) is chained
    os.kill(os.getpid(), signal.SIGTERM)
    assert server_handlers == [signal.SIGTERM]


async def test_a_handler_the_server_installs_later_is_chained_too(
    server_handlers: list[int],
) -> None:
    await start_a_stream()
    signal.signal(signal.SIGTERM, lambda signum, frame: server_handlers.append(-signum))
    await start_a_stream()
    os.kill(os.getpid(), signal.SIGTERM)
    assert streamfx.shutdown_requested()
    assert server_handlers == [-signal.SIGTERM]


@pytest.mark.parametrize("how", ["function", "environment"])
async def test_the_automatic_drain_can_be_turned_off(
    server_handlers: list[int], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "function":
        streamfx.set_auto_drain(False)
    else:
        monkeypatch.setenv("STREAMFX_AUTO_DRAIN", "0")
    installed = signal.getsignal(signal.SIGTERM)
    await start_a_stream()
    assert signal.getsignal(signal.SIGTERM) is installed
    os.kill(os.getpid(), signal.SIGTERM)
    assert not streamfx.shutdown_requested()
    assert server_handlers == [signal.SIGTERM]


async def test_an_ignored_signal_is_left_alone(server_handlers: list[int]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as hypercorn's worker processes do
    await start_a_stream()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


async def test_a_stream_off_the_main_thread_installs_nothing(
    server_handlers: list[int],
) -> None:
    installed = signal.getsignal(signal.SIGTERM)
    await asyncio.to_thread(asyncio.run, start_a_stream())
    assert signal.getsignal(signal.SIGTERM) is installed
