"""What every adapter promises, checked under every server it runs on (the `Target`s
of tests/_adapter_contract.py): plain bodies, errors, SSE, clients that leave or stop
reading, backpressure and shutdown. Downloads, exports and uploads:
tests/test_adapter_contract_transfers.py. What only one adapter does: its own
tests/test_adapter_<name>.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamfx import SSEDecoder
from tests._adapter_contract import (
    DJANGO_LEAK,
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
    read_to_eof,
    recv_body,
    recv_until,
    tcp_in_flight_limit,
    wait_until,
)
from tests._stream_routes import lines
from tests.apps.tally import Tally

pytest_plugins = ["tests._adapter_fixtures"]  # the `target` and `deployment` fixtures
pytestmark = DJANGO_LEAK


async def closed_once(d: Deployment, bodies: int) -> None:
    """Wait until `bodies` counted bodies were closed and no streamfx task is left;
    then check that none was closed twice and every source that started finished."""
    await wait_until(lambda: d.tally.closes >= bodies, f"{bodies} bodies closed")
    await d.settled()
    assert d.tally.closes == bodies
    assert d.tally.finalized == d.tally.started


async def read_cut(sock: socket.socket) -> tuple[bytes, bool]:
    """All that arrives until the server ends the connection, and whether it reset it."""
    try:
        return await read_to_eof(sock), False
    except ConnectionResetError:
        return b"", True


# -- plain bodies --------------------------------------------------------------------------


async def test_a_body_goes_out_whole_and_chunked_and_is_closed_once(deployment: Deployment) -> None:
    d = deployment
    reply = await d.client.get("/lines", params={"n": 1000})
    empty = await d.client.get("/empty")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/plain"
    assert reply.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in reply.headers
    assert reply.content == lines(range(1000))
    assert empty.status_code == 200
    assert empty.content == b""
    await closed_once(d, 2)
    assert d.tally.started == 2
    assert d.tally.count("test", "completed") == 2


async def test_a_content_length_is_kept_and_a_body_short_of_it_is_cut(
    deployment: Deployment,
) -> None:
    d = deployment
    reply = await d.client.get("/sized", params={"n": 100})
    assert reply.headers["content-length"] == str(len(lines(range(100))))
    assert "transfer-encoding" not in reply.headers
    assert reply.content == lines(range(100))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await d.client.get("/sized", params={"n": 100, "short": 1})
    await closed_once(d, 2)


async def test_head_sends_the_headers_only_and_never_starts_the_body(
    deployment: Deployment,
) -> None:
    d = deployment
    plain = await d.client.head("/lines")
    events = await d.client.head("/sse", params={"n": 5})
    sized = await d.client.head("/sized", params={"n": 100})
    assert sized.headers["content-length"] == str(len(lines(range(100))))
    assert sized.content == b""
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "text/plain"
    assert plain.content == b""
    assert events.status_code == 200
    assert events.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert events.content == b""
    await closed_once(d, 2)
    assert d.tally.started == 0


async def test_for_request_sees_the_method_and_headers(deployment: Deployment) -> None:
    d = deployment
    reply = await d.client.get("/echo", headers={"X-Probe": "here"})
    assert reply.status_code == 200
    assert reply.text == "GET here"
    await closed_once(d, 1)


async def test_an_error_from_for_request_is_answered_with_its_status(
    deployment: Deployment,
) -> None:
    d = deployment
    reply = await d.client.get("/gone")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.text == d.target.error_text(404, "no such file: gone.bin")
    await d.settled()
    assert d.tally.started == 0
    assert d.tally.closes == 1  # the body that will never be sent is closed


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        ("runtime", 500, "database exploded: secret detail"),
        ("oserror", 500, "db down"),  # an OSError, yet no disconnect
        ("refused", 403, "not yours: /srv/secret"),
    ],
)
async def test_an_error_before_the_first_chunk_is_answered_with_its_status(
    deployment: Deployment, error: str, status: int, message: str
) -> None:
    d = deployment
    reply = await d.client.get("/fail-before", params={"error": error})
    after = await d.client.get("/lines", params={"n": 3})
    assert reply.status_code == status
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.text == d.target.error_text(status, message)
    assert after.content == lines(range(3))
    await closed_once(d, 2)
    assert d.tally.started == 2


async def test_an_error_after_the_start_never_looks_complete(deployment: Deployment) -> None:
    d = deployment
    received = bytearray()
    async with d.client.stream("GET", "/fail-after") as reply:
        assert reply.status_code == 200
        with pytest.raises(d.target.cut_body_errors):
            async for chunk in reply.aiter_raw():
                received += chunk
    sent = lines(range(20))  # then the error
    assert sent.startswith(received) if d.target.resets_cut_bodies else received == sent

    with await open_raw(d.port, "/fail-after") as sock:
        chunked, reset = await read_cut(sock)
    body, complete = dechunk(chunked)
    assert not complete
    assert not reset or d.target.resets_cut_bodies
    if not reset:
        assert b"transfer-encoding: chunked" in chunked.lower()
        assert body == sent

    with await open_raw(d.port, "/fail-after?length=1000") as sock:
        sized, reset = await read_cut(sock)
    head, _, body = sized.partition(b"\r\n\r\n")
    assert not reset or d.target.resets_cut_bodies
    if not reset:
        assert b"content-length: 1000" in head.lower()
        assert body == sent
    await closed_once(d, 3)


# -- SSE ---------------------------------------------------------------------------------


async def test_sse_sends_each_event_at_once_and_heartbeats_in_the_silence(
    deployment: Deployment,
) -> None:
    """Event K waits until the client has seen event K-1 and two pings after it."""
    d = deployment
    with await open_raw(d.port, "/sse?n=3&gated=1&heartbeat=0.05") as sock:
        raw = await recv_until(sock, b"data: event 0\n")
        head = raw.partition(b"\r\n\r\n")[0].lower()
        assert b"content-type: text/event-stream; charset=utf-8" in head
        assert b"cache-control: no-cache" in head
        assert b"content-length" not in head
        for index in (1, 2):
            raw += await recv_until(sock, b": ping\n\n", count=2)  # two pings after it
            d.tally.go = index
            raw = await recv_until(sock, f"data: event {index}\n".encode(), raw)
        raw = await recv_body(sock, raw)
    body, complete = dechunk(raw)
    assert complete
    events = SSEDecoder().feed(body)
    assert [(event.data, event.id) for event in events] == [
        ("event 0", "0"),
        ("event 1", "1"),
        ("event 2", "2"),
    ]
    await d.settled()
    assert d.tally.finalized == d.tally.started == 1
    assert d.tally.count("sse", "completed") == 1


async def test_sse_client_leaving_closes_the_source(deployment: Deployment) -> None:
    d = deployment
    with await open_raw(d.port, "/sse?n=1&hold=1&heartbeat=0.05") as sock:
        await recv_until(sock, b"data: event 0\n")
    await wait_until(lambda: d.tally.finalized == 1, "the source's finally")
    await d.settled()
    assert d.tally.count("sse", "closed") == 1


# -- clients that leave ----------------------------------------------------------------


async def test_clients_leaving_mid_stream_close_each_body_once(deployment: Deployment) -> None:
    """Half the streams are busy (a write notices the client left), half idle after
    their first event (only a watch on the connection can notice; a WSGI server cannot,
    so there the idle ones send heartbeats)."""
    d = deployment
    one_at_a_time = d.target.lacks("concurrency") is not None
    clients, at_once = (8, 1) if one_at_a_time else (200, 200)
    idle = "/sse?n=1&hold=1" + (
        "&heartbeat=0.05" if d.target.lacks("sees_silent_disconnects") else ""
    )
    for first in range(0, clients, at_once):
        paths = ["/forever" if i % 2 else idle for i in range(first, first + at_once)]
        socks = await asyncio.gather(*(open_raw(d.port, path) for path in paths))
        try:
            marks = [b"\n3\n" if path == "/forever" else b"data: event 0\n" for path in paths]
            await asyncio.gather(
                *(recv_until(s, mark) for s, mark in zip(socks, marks, strict=True))
            )
            assert d.tally.started == first + at_once
            assert d.tally.finalized == first
        finally:
            close_all(socks)

        def all_ended(count: int = first + at_once) -> bool:
            return d.tally.finalized == count

        await wait_until(all_ended, "every finalizer")
    await closed_once(d, clients // 2)
    streams = ("test", "sse")
    await wait_until(lambda: all(d.tally.count(k, "active") == 0 for k in streams), "every close")
    assert d.tally.count("test", "closed") == d.tally.count("sse", "closed") == clients // 2


@requires("sees_silent_disconnects")
async def test_a_client_leaving_before_the_first_chunk_stops_the_body(
    deployment: Deployment,
) -> None:
    d = deployment
    with await open_raw(d.port, "/stall"):
        await wait_until(lambda: d.tally.started == 1, "the body to start")
    await closed_once(d, 1)


@requires("write_timeout")
async def test_a_client_that_stops_reading_is_cut_after_the_write_timeout(
    deployment: Deployment,
) -> None:
    d = deployment
    path = "/endless?write_timeout=0.3&disconnect_check=0.05"
    with await open_raw(d.port, path, rcvbuf=4096):  # connected, but never reads
        await wait_until(lambda: d.tally.started == 1, "the body to start")
        await closed_once(d, 1)
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
    await closed_once(d, 1)


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
    await closed_once(d, 1)


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
    await closed_once(d, 1)
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
