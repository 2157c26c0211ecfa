"""What every adapter promises when the client is slow or the server stops, checked
under every server it runs on (the `Target`s of tests/_adapter_contract.py): the write
timeout, backpressure (suspend and sliding buffers), `request_shutdown` and stopping the
server."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._adapter_contract import (
    Deployment,
    Target,
    requires,
    serve_elsewhere,
    serve_here,
    tasks_here,
)
from tests._client import (
    close_all,
    dechunk,
    open_raw,
    recv_body,
    recv_until,
    tcp_in_flight_limit,
    wait_until,
)
from tests._stream_routes import lines
from tests.apps.tally import Tally

pytest_plugins = ["tests._adapter_fixtures"]  # the `target` and `deployment` fixtures


# -- clients that stop reading ----------------------------------------------------------


@requires("write_timeout")
async def test_a_client_that_stops_reading_is_cut_after_the_write_timeout(
    deployment: Deployment,
) -> None:
    d = deployment
    path = "/endless?write_timeout=0.3&disconnect_check=0.05"
    with await open_raw(d.port, path, rcvbuf=4096):  # connected, but never reads
        await wait_until(lambda: d.tally.started == 1, "the body to start")
        await d.closed_once(1)
        # the server's buffers filled up, then the stall was noticed and cut
        assert d.tally.produced < 1000


@requires("write_timeout")
async def test_a_slow_client_that_keeps_reading_is_not_cut(deployment: Deployment) -> None:
    d = deployment
    size, count = 1000, 600
    path = f"/slow?strategy=suspend&capacity=8&size={size}&n={count}&write_timeout=0.5"
    loop = asyncio.get_running_loop()
    raw = bytearray()
    with await open_raw(d.port, path, rcvbuf=4096) as sock:
        async with asyncio.timeout(60):
            while not raw.endswith(b"\r\n0\r\n\r\n"):
                chunk = await loop.sock_recv(sock, 4096)
                assert chunk, "the server cut a client that kept reading"
                raw += chunk
                await asyncio.sleep(0.002)  # a slow reader, never silent for long
    body, complete = dechunk(bytes(raw))
    assert complete
    assert body == lines(range(count), size)
    await d.closed_once(1)


# -- backpressure ---------------------------------------------------------------------


async def read_counting_lines(sock: socket.socket, tally: Tally, received: bytes) -> bytes:
    """Read to the end of a chunked body of numbered lines, telling the app how many
    lines arrived (``tally.consumed``) as they do."""
    loop = asyncio.get_running_loop()
    data = bytearray(received)
    ends = re.compile(rb"\d\n")  # a line's end; chunk sizes end in "\r\n"
    tally.consumed = len(ends.findall(data))
    async with asyncio.timeout(60):
        while not data.endswith(b"\r\n0\r\n\r\n"):
            chunk = await loop.sock_recv(sock, 16384)
            assert chunk, "connection closed before the end of the body"
            tally.consumed += len(ends.findall(bytes(data[-1:]) + chunk))
            data += chunk
    return bytes(data)


async def test_a_slow_reader_holds_back_a_suspend_producer(deployment: Deployment) -> None:
    """The producer never runs further ahead of what the client has read than the
    buffers on the way hold: checked at every item it produces."""
    d = deployment
    size, count, capacity, rcvbuf = 64 * 1024, 400, 8, 64 * 1024
    path = f"/slow?strategy=suspend&capacity={capacity}&size={size}&n={count}"
    with await open_raw(d.port, path, rcvbuf=rcvbuf) as sock:
        head = await recv_until(sock, b"\r\n\r\n")
        # the client reads nothing more until the producer has filled the buffer
        await wait_until(lambda: d.tally.produced > capacity, "the producer to run ahead")
        raw = await read_counting_lines(sock, d.tally, head)
    # The kernel's buffers, the server's own, the buffer and the batch in hand.
    in_flight = tcp_in_flight_limit(rcvbuf) + d.target.server_buffer
    limit = in_flight // size + 2 * capacity + 4
    assert d.tally.max_lead <= limit < count // 2, (d.tally.max_lead, limit)
    body, complete = dechunk(raw)
    assert complete
    assert body == lines(range(count), size)
    assert d.tally.count("test", "dropped") == 0
    await d.closed_once(1)


async def test_a_slow_reader_makes_a_sliding_producer_drop_the_oldest(
    deployment: Deployment,
) -> None:
    d = deployment
    size, count, capacity, rcvbuf = 16 * 1024, 2000, 8, 64 * 1024
    path = f"/slow?strategy=sliding&capacity={capacity}&size={size}&n={count}"
    with await open_raw(d.port, path, rcvbuf=rcvbuf) as sock:
        head = await recv_until(sock, b"\r\n\r\n")
        # the client pauses; the producer runs to its end regardless
        await wait_until(lambda: d.tally.produced == count, "the producer to finish", 30)
        raw = await recv_body(sock, head)
    body, complete = dechunk(raw)
    assert complete
    numbers = [int(line[size:]) for line in body.splitlines()]
    dropped = d.tally.count("test", "dropped")
    assert dropped > 0
    assert numbers == sorted(set(numbers))  # a subsequence, in order
    assert len(numbers) + dropped == count
    assert d.tally.count("test", "items") + dropped == count
    assert numbers[-1] == count - 1  # sliding keeps the newest
    await d.closed_once(1)
    assert d.tally.count("test", "completed") == 1


# -- shutdown -----------------------------------------------------------------------------


@requires("concurrency")
async def test_request_shutdown_ends_sse_streams_with_the_farewell(
    deployment: Deployment,
) -> None:
    """`request_shutdown()`: open SSE streams send their farewell and end cleanly (the
    chunked body's terminating chunk), so the server can stop at once."""
    d = deployment
    socks = await asyncio.gather(*(open_raw(d.port, "/sse?n=1&hold=1") for _ in range(5)))
    try:
        starts = await asyncio.gather(*(recv_until(s, b"data: event 0\n") for s in socks))
        await d.request_shutdown()
        ends = await asyncio.gather(
            *(recv_body(s, start) for s, start in zip(socks, starts, strict=True))
        )
    finally:
        close_all(socks)
        await d.reset_shutdown()
    for raw in ends:
        assert b"event: shutdown\ndata: bye\n\n" in raw
        assert raw.endswith(b"\r\n0\r\n\r\n")
    await wait_until(lambda: d.tally.finalized == 5, "every finalizer")
    await d.settled()


@contextlib.contextmanager
def hypercorn_cancellations_ignored(target: Target) -> Iterator[None]:
    """hypercorn cancels its connection tasks at shutdown, and asyncio's stream callback
    then logs their CancelledError: the server's doing, not the app's."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        cancelled = str(context.get("message", "")).startswith(
            "Exception in callback StreamReaderProtocol.connection_made"
        ) and isinstance(context.get("exception"), asyncio.CancelledError)
        if not (target.server == "hypercorn" and cancelled) and previous is not None:
            previous(loop, context)

    loop.set_exception_handler(handler)
    try:
        yield
    finally:
        loop.set_exception_handler(previous)


@contextlib.asynccontextmanager
async def own_server(target: Target, root: Path) -> AsyncIterator[tuple[int, Tally]]:
    """A server for this test alone (it stops it): ``(port, tally)``."""
    if target.remote:
        with serve_elsewhere(target, root) as port:
            yield port, Tally.mapped(root / "tally.bin")
    else:
        tally = Tally()
        async with serve_here(target, tally, root) as port:
            yield port, tally


async def test_stopping_the_server_ends_open_streams(target: Target, tmp_path: Path) -> None:
    """Stopping the server with streams open ends them (the server's grace period,
    then cancellation): every finalizer runs, no task is left, nothing hangs."""
    reason = target.lacks("server_shutdown")
    if reason is not None:
        pytest.skip(reason)
    socks: list[socket.socket] = []
    with hypercorn_cancellations_ignored(target):
        try:
            async with own_server(target, tmp_path) as (port, tally):
                socks += await asyncio.gather(*(open_raw(port, "/forever") for _ in range(10)))
                await asyncio.gather(*(recv_until(sock, b"\n3\n") for sock in socks))
            # uvicorn cancels the requests still running after its grace period and
            # returns without waiting for them: their cleanup follows at once.
            await wait_until(lambda: tally.finalized == tally.started == 10, "every finalizer")
            await wait_until(lambda: tally.count("test", "active") == 0, "every body's close")
            if not target.remote:

                async def no_tasks() -> bool:
                    return await tasks_here(target) == 0

                await wait_until(no_tasks, "no streamfx task left")
        finally:
            close_all(socks)
