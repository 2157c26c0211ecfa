"""The broadcast benchmarks' floor (`bench.broadcast_apps.RawFanout`) under a real
uvicorn: every subscriber gets every frame published after it came, in order; what
was published while it waited leaves in one write; a client that leaves ends its
connection's tasks even when nothing is published any more."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.broadcast_apps import RawFanout
from tests._servers import serve


def raw_app(fanout: RawFanout, ended: asyncio.Queue[None]) -> Any:
    """`fanout` as an ASGI app; each connection that ends puts None into `ended`."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await fanout.serve(receive, send, [(b"content-type", b"text/event-stream")])
        finally:
            ended.put_nowait(None)

    return app


async def all_ended(ended: asyncio.Queue[None], count: int) -> None:
    """Return once `count` connections have ended (within 5 s)."""
    async with asyncio.timeout(5):
        for _ in range(count):
            await ended.get()


async def subscribe(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect and read the response's head: the server registered the subscriber before
    it wrote the head (nothing between the two yields to the loop)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    return reader, writer


async def read_events(reader: asyncio.StreamReader, count: int) -> list[str]:
    """The data of the next `count` events (the chunked framing between them skipped)."""
    found: list[str] = []
    received = b""
    async with asyncio.timeout(5):
        while len(found) < count:
            received += await reader.read(65536)
            *complete, received = received.split(b"\n\n")
            found += [line.rsplit(b"data: ", 1)[1].decode() for line in complete]
    return found


def writer_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "RawFanout.write"
    ]


async def test_each_subscriber_gets_every_frame_published_after_it_came_in_order() -> None:
    fanout, ended = RawFanout(), asyncio.Queue[None]()
    fanout.publish("before anyone came")
    async with serve(raw_app(fanout, ended), http="httptools") as (_, port):
        first, first_writer = await subscribe(port)
        second, second_writer = await subscribe(port)
        assert fanout.subscribers == 2
        for k in range(1, 4):
            fanout.publish(f"event {k}")
        expected = ["event 1", "event 2", "event 3"]
        assert await read_events(first, 3) == expected
        assert await read_events(second, 3) == expected
        for writer in (first_writer, second_writer):
            writer.close()
            await writer.wait_closed()
        await all_ended(ended, 2)
        assert fanout.subscribers == 0


async def test_what_was_published_while_a_subscriber_waited_leaves_in_one_write() -> None:
    fanout, ended = RawFanout(), asyncio.Queue[None]()
    async with serve(raw_app(fanout, ended), http="httptools") as (_, port):
        reader, writer = await subscribe(port)
        assert fanout.subscribers == 1
        for k in range(1, 6):  # no await in between: the writer wakes once for all five
            fanout.publish(f"event {k}")
        size_line = await reader.readuntil(b"\r\n")
        body = await reader.readexactly(int(size_line, 16))
        assert body == b"".join(f"data: event {k}\n\n".encode() for k in range(1, 6))
        writer.close()
        await writer.wait_closed()
        await all_ended(ended, 1)
        assert fanout.subscribers == 0


async def test_a_client_that_leaves_ends_its_connection_with_nothing_published() -> None:
    fanout, ended = RawFanout(), asyncio.Queue[None]()
    async with serve(raw_app(fanout, ended), http="httptools") as (_, port):
        _, writer = await subscribe(port)
        assert fanout.subscribers == 1
        assert len(writer_tasks()) == 1
        writer.close()
        await writer.wait_closed()
        # nothing is published: only the disconnect can end the writer
        await all_ended(ended, 1)
        assert (fanout.subscribers, writer_tasks()) == (0, [])


async def test_publish_wakes_only_the_waiters_of_its_own_event() -> None:
    fanout = RawFanout()
    waiter = fanout.published
    fanout.publish("one")
    assert waiter.is_set()
    assert not fanout.published.is_set()  # the next waiter waits for the next publish
    assert fanout.frames == [b"data: one\n\n"]
