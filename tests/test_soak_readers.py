"""The readers soak's pieces: the healthy clients' reader, which takes each event's
arrival from the kernel (`bench.soak.stamped`), and the `Broadcast` subscription the
soak servers offer beside ``sse()`` (`bench.soak.server_side.hub_subscription`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import time
from collections.abc import AsyncIterator

import pytest

from bench.soak import readers_runs, server_side
from bench.soak.server_side import COUNTS, HANDOVERS, Params, hub_subscription, ticker
from bench.soak.stamped import StampedReader
from streamfx import SSEDecoder
from tests.test_bench_subscribers import wait_until_the_kernel_stamps

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture
def kernel_stamps() -> None:
    """Linux stamps received packets only once a socket has asked (lazily): prime it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with server, client:
        client.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
        wait_until_the_kernel_stamps(server, client)


@pytest.mark.usefixtures("kernel_stamps")
async def test_a_stamped_reader_takes_the_kernels_arrival_not_the_time_it_read() -> None:
    """The readers scenario's latencies must be the server's: this process reading late
    (run B keeps it busier than run A) must not count."""
    writers: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(HEAD)
        await writer.drain()
        await writers.put(writer)
        with contextlib.suppress(ConnectionResetError):
            await reader.read()  # until the client goes (with a reset)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    events: list[tuple[float, str, float]] = []
    got = asyncio.Event()

    def arrived(arrival: float, data: str) -> None:
        events.append((arrival, data, time.perf_counter()))
        got.set()

    async with server:
        reader = await StampedReader.get(port, "/", arrived)
        try:
            assert await reader.headers == 200
            writer = await writers.get()
            sent = time.perf_counter()
            writer.write(chunk(b": a comment is no event\n\ndata: 1 0.5 x\n\n"))
            time.sleep(0.2)  # noqa: ASYNC251 - the client is busy: it reads late
            await asyncio.wait_for(got.wait(), 5)
        finally:
            reader.close()
        await asyncio.wait_for(reader.ended, 5)
    [(arrival, data, read_at)] = events
    assert data == "1 0.5 x"
    assert sent <= arrival < sent + 0.1 < sent + 0.2 <= read_at


async def test_a_stamped_reader_ends_when_the_server_closes() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(HEAD + chunk(b"data: 1 0.5 x\n\n"))
        writer.close()

    seen: list[str] = []
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader = await StampedReader.get(port, "/", lambda _, data: seen.append(data))
        await asyncio.wait_for(reader.ended, 5)
        reader.close()
    assert seen == ["1 0.5 x"]


@pytest.fixture
async def tickers() -> AsyncIterator[None]:
    """The soak's shared tickers, stopped and forgotten after the test."""
    yield
    for found in server_side._tickers.values():
        found.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await found.task
    server_side._tickers.clear()


@pytest.mark.usefixtures("tickers")
@pytest.mark.parametrize("overflow", ["sliding", "disconnect"])
async def test_hub_subscribers_get_each_tick_published_once_and_are_counted(
    overflow: str,
) -> None:
    params = Params(gap=0.01, size=3, heartbeat=5.0, policy=f"hub-{overflow}", tag="t")
    started, finalized = COUNTS.started, COUNTS.finalized
    first = hub_subscription(params)
    second = hub_subscription(Params(gap=0.01, size=3, heartbeat=5.0, policy=f"hub-{overflow}"))

    async def three_events(body: AsyncIterator[bytes]) -> list[str]:
        decoder = SSEDecoder()
        data: list[str] = []
        while len(data) < 3:
            data += [event.data for event in decoder.feed(await anext(body)) if event.data]
        return data

    seen = await asyncio.gather(three_events(first), three_events(second))
    assert COUNTS.started == started + 2
    # one hub per overflow, published to by the shared ticker: the same items to both
    clock = ticker(0.01, 3)
    assert list(clock.hubs) == [(overflow, 64)]
    assert clock.hubs[overflow, 64].overflow == overflow
    assert all(len(item.split(" ")) == 3 and item.endswith(" xxx") for item in seen[0])
    assert set(seen[0]) & set(seen[1])
    for data in seen:  # each tick once, in order
        numbers = [int(item.split(" ")[0]) for item in data]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    await first.aclose()  # type: ignore[attr-defined]
    assert "t" in HANDOVERS.finalized
    await second.aclose()  # type: ignore[attr-defined]
    assert COUNTS.finalized == finalized + 2


def test_handed_lists_the_last_handover_of_each_stream_not_yet_finalized() -> None:
    """What run B waits on: a stalled stream's last handover (the hook's, else its
    source's resume), gone once the stream is finalized."""
    handovers = server_side.Handovers()
    handovers.resumed.update({"a": 1.0, "b": 2.0, "c": 3.0})
    handovers.sent["b"] = 2.5  # the hook's time wins
    handovers.finalized["c"] = 4.0
    assert handovers.handed() == {"a": 1.0, "b": 2.5}
    assert handovers.evictions() == {"c": (3.0, 4.0)}


def test_run_b_waits_while_a_stalled_stream_still_fills_its_buffers() -> None:
    """Run B used to stop 3 s (`FILL_S`) plus the bound after the connects, whether or not
    the stalled streams had stalled: under waitress with the README's settings (256 KiB
    held per connection) a busy server fed them slowly, they stalled ~24 s in and were
    evicted in time, unseen ("0 evicted, after stall nan"). It waits while any stream
    not evicted may still be in time: handed a chunk within the bound, or not begun."""
    now = time.perf_counter()
    tags = ["a", "b"]
    evicted = {"a": (now - 6.0, now - 1.0)}
    filling = {"evictions": evicted, "handed": {"b": now - 0.5}}
    assert readers_runs.still_due(filling, tags, 6.0)
    not_begun = {"evictions": evicted, "handed": {}}
    assert readers_runs.still_due(not_begun, tags, 6.0)
    overdue = {"evictions": evicted, "handed": {"b": now - 7.0}}  # a failed check already
    assert not readers_runs.still_due(overdue, tags, 6.0)
    done = {"evictions": {**evicted, "b": (now - 5.0, now - 0.5)}, "handed": {}}
    assert not readers_runs.still_due(done, tags, 6.0)


async def test_runs_a_and_b_run_with_the_client_s_garbage_collector_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full collection in the client (50 ms in run B) made its healthy readers read
    late, and a late read is stamped with its newest packet: the client's pause showed
    as the server's latency. Both runs keep the collector off; it is back after."""
    seen: list[bool] = []

    async def record(*args: object) -> object:
        seen.append(gc.isenabled())
        return None

    monkeypatch.setattr(readers_runs, "_run_alone", record)
    monkeypatch.setattr(readers_runs, "_run_beside", record)
    assert gc.isenabled()
    await readers_runs.run_alone(None, "", None)  # type: ignore[arg-type]
    await readers_runs.run_beside(None, "", None, [], {})  # type: ignore[arg-type]
    assert seen == [False, False]
    assert gc.isenabled()
    gc.disable()
    try:
        with readers_runs.client_gc_paused():
            pass
        assert not gc.isenabled(), "left off when it was off before"
    finally:
        gc.enable()


def test_params_take_the_stall_after_asked_for() -> None:
    assert Params.parse({}).stall_after == "default"
    assert Params.parse({"sa": "0.1"}).stall_after == 0.1
    assert Params.parse({"sa": "none"}).stall_after is None
