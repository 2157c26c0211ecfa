"""Tests every in-view adapter (Quart, Django) must pass, written once.

A test module imports these test functions (pytest then collects them there) and
provides a `running_app` fixture: ``running_app(tally, server)`` is an async context
manager that serves the module's app under `server` and yields ``(client, port)``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest

from streamfx import SSEDecoder
from tests._servers import Server
from tests._stream_routes import SIZE, Tally, lines, write_file

Running = Callable[[Tally, Server], AbstractAsyncContextManager[tuple[httpx.AsyncClient, int]]]


async def settle(condition: Callable[[], bool], seconds: float = 1.0) -> None:
    """Wait (polling) up to `seconds` for `condition`; fail if it never holds."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - polling counters the app updates
            await asyncio.sleep(0.005)


async def raw_get(port: int, path: str) -> bytes:
    """All a raw HTTP/1.1 GET receives until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        async with asyncio.timeout(5):
            return await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_streams_whole_body_and_closes(running_app: Running, server: Server) -> None:
    tally = Tally()
    async with running_app(tally, server) as (client, _port):
        reply = await client.get("/lines", params={"n": 1000})
        head = await client.head("/lines")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/plain"
    assert reply.content == lines(list(range(1000)))
    assert head.status_code == 200
    assert head.headers["content-type"] == "text/plain"
    assert head.content == b""  # and the HEAD body was closed, never started:
    assert tally.finalized == tally.started == 1
    assert tally.closes == 2


async def test_sse_with_heartbeats(running_app: Running, server: Server) -> None:
    tally = Tally()
    params = {"n": 3, "gap": 0.3, "heartbeat": 0.05}
    async with (
        running_app(tally, server) as (client, _port),
        client.stream("GET", "/sse", params=params) as reply,
    ):
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
        raw = b"".join([chunk async for chunk in reply.aiter_raw()])
    events = SSEDecoder().feed(raw)
    assert [(event.data, event.id) for event in events] == [
        ("event 0", "0"),
        ("event 1", "1"),
        ("event 2", "2"),
    ]
    assert raw.count(b": ping\n\n") >= 4  # 0.6 s of silence, a ping every 0.05 s
    assert tally.finalized == tally.started == 1


async def test_each_export_format(running_app: Running, server: Server) -> None:
    tally = Tally()
    expected = [{"id": index, "name": f"row {index}", "formula": "=1+1"} for index in range(500)]
    async with running_app(tally, server) as (client, _port):
        as_json = await client.get("/export/json", params={"n": 500})
        as_ndjson = await client.get("/export/ndjson", params={"n": 500})
        as_csv = await client.get("/export/csv", params={"n": 500})
    assert as_json.headers["content-type"].startswith("application/json")
    assert "rows.out" in as_json.headers["content-disposition"]
    assert as_json.json() == expected
    assert [json.loads(line) for line in as_ndjson.text.splitlines()] == expected
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert rows == [
        {"id": str(row["id"]), "name": row["name"], "formula": "'=1+1"} for row in expected
    ]
    assert tally.finalized == tally.started == 3


async def test_download_range_conditional_head(
    running_app: Running, server: Server, tmp_path: Path
) -> None:
    content = write_file(tmp_path)
    async with running_app(Tally(root=tmp_path), server) as (client, _port):
        whole = await client.get("/files/data.bin")
        assert whole.status_code == 200
        assert whole.content == content
        assert whole.headers["content-length"] == str(SIZE)
        etag = whole.headers["etag"]

        part = await client.get("/files/data.bin", headers={"range": "bytes=1000-1999"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 1000-1999/{SIZE}"
        assert part.content == content[1000:2000]

        unchanged = await client.get("/files/data.bin", headers={"if-none-match": etag})
        assert unchanged.status_code == 304
        assert unchanged.content == b""
        assert "content-type" not in unchanged.headers

        beyond = await client.get("/files/data.bin", headers={"range": f"bytes={SIZE}-"})
        assert beyond.status_code == 416

        head = await client.head("/files/data.bin")
        assert head.status_code == 200
        assert head.headers["content-length"] == str(SIZE)
        assert head.content == b""

        missing = await client.get("/files/nothing.bin")
        assert missing.status_code == 404
        assert missing.text == "Not Found"


async def test_error_before_start_is_500_or_its_status(
    running_app: Running, server: Server
) -> None:
    tally = Tally()
    async with running_app(tally, server) as (client, _port):
        failed = await client.get("/fail-before")
        refused = await client.get("/refused")
    assert failed.status_code == 500
    assert failed.headers["content-type"].startswith("text/plain")
    assert failed.text == "Internal Server Error"
    assert refused.status_code == 403
    assert refused.text == "Forbidden"
    assert tally.finalized == tally.started == tally.closes == 2


async def test_error_after_start_never_looks_complete(running_app: Running, server: Server) -> None:
    tally = Tally()
    async with running_app(tally, server) as (client, port):
        received = bytearray()
        async with client.stream("GET", "/fail-after") as reply:
            assert reply.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                async for chunk in reply.aiter_raw():
                    received += chunk
        assert received == lines(list(range(20)))
        raw = await raw_get(port, "/fail-after")
        assert raw.endswith(b"19\n\r\n"), raw[-40:]
        export = await raw_get(port, "/export/json?n=50000&fail_at=20000")
        assert b"[" in export
        assert not export.endswith(b"0\r\n\r\n")
        await settle(lambda: tally.finalized == tally.started == 3)
        await settle(lambda: tally.closes == 2)  # the two text bodies


async def test_clients_disconnecting_mid_stream(running_app: Running, server: Server) -> None:
    tally = Tally()
    async with running_app(tally, server) as (_client, port):
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        for _, writer in connections:
            writer.write(b"GET /forever HTTP/1.1\r\nHost: test\r\n\r\n")
        for reader, _ in connections:
            async with asyncio.timeout(5):
                await reader.readuntil(b"\n3\n")
        assert tally.started == 20
        assert tally.finalized == 0
        for _, writer in connections:
            writer.close()
            await writer.wait_closed()
        await settle(lambda: tally.finalized == 20)
        await settle(lambda: tally.closes == 20)
        await asyncio.sleep(0.05)
        assert tally.closes == 20  # exactly once each


async def test_a_client_that_stops_reading_is_gone_after_the_write_timeout(
    running_app: Running, server: Server
) -> None:
    tally = Tally()
    async with running_app(tally, server) as (_client, port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", port))
            request = b"GET /endless?write_timeout=0.3 HTTP/1.1\r\nHost: test\r\n\r\n"
            await loop.sock_sendall(sock, request)  # and never reads
            await settle(lambda: tally.started == 1)
            await settle(lambda: tally.finalized == tally.closes == 1, seconds=5)
            # the server's buffers filled up, then the stall was noticed and cut
            assert tally.produced < 1000
        finally:
            sock.close()
