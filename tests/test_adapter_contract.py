"""What every adapter promises, checked under every server it runs on (the `Target`s
of tests/_adapter_contract.py): plain bodies, errors, SSE and clients that leave. Slow
clients, backpressure and shutdown: tests/test_adapter_contract_flow.py; downloads,
exports and uploads: tests/test_adapter_contract_transfers.py. What only one adapter
does: its own tests/test_adapter_<name>.py.
"""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from streamfx import SSEDecoder
from tests._adapter_contract import (
    Deployment,
    requires,
)
from tests._client import (
    close_all,
    dechunk,
    open_raw,
    read_to_eof,
    recv_body,
    recv_until,
    wait_until,
)
from tests._stream_routes import lines

pytest_plugins = ["tests._adapter_fixtures"]  # the `target` and `deployment` fixtures


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
    await d.closed_once(2)
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
    await d.closed_once(2)


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
    await d.closed_once(2)
    assert d.tally.started == 0


async def test_for_request_sees_the_method_and_headers(deployment: Deployment) -> None:
    d = deployment
    reply = await d.client.get("/echo", headers={"X-Probe": "here"})
    assert reply.status_code == 200
    assert reply.text == "GET here"
    await d.closed_once(1)


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
    await d.closed_once(2)
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
    await d.closed_once(3)


# -- SSE ---------------------------------------------------------------------------------


async def test_sse_sends_its_headers_and_each_event_at_once_and_heartbeats_in_the_silence(
    deployment: Deployment,
) -> None:
    """The headers come before any event; event K waits until the client has seen
    event K-1 and two pings after it (``tally.go``)."""
    d = deployment
    with await open_raw(d.port, "/sse?n=3&gated=1&heartbeat=0.05") as sock:
        raw = await recv_until(sock, b"\r\n\r\n")
        head = raw.partition(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 200")
        assert b"content-type: text/event-stream; charset=utf-8" in head
        assert b"cache-control: no-cache" in head
        assert b"content-length" not in head
        assert b"data:" not in raw
        for index in range(3):
            d.tally.go = index + 1
            raw = await recv_until(sock, f"data: event {index}\n".encode(), raw)
            if index < 2:
                raw += await recv_until(sock, b": ping\n\n", count=2)  # two pings after it
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
    await d.closed_once(clients // 2)
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
    await d.closed_once(1)
