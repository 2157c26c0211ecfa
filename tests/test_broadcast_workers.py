"""Redis under ``uvicorn --workers 4`` (tests/apps/broadcast_app.py), read by real HTTP
clients: a publish in one worker reaches subscribers in all; ``CLIENT LIST`` shows one
reading connection per process; a client that reconnects to another worker resumes
without a gap; Redis stopped and restarted mid-stream loses no accepted publish and
drops no client."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import redis.asyncio
import redis.exceptions

from streamfx import ServerSentEvent, SSEDecoder
from tests._redis import RedisServer
from tests._servers import free_port, serve_command

WORKERS = 4


class Client:
    """One ``EventSource``-like connection: its worker, and what it decoded."""

    def __init__(self, http: httpx.AsyncClient, last_event_id: str = "") -> None:
        self.http = http
        self.decoder = SSEDecoder()
        self.decoder.last_event_id = last_event_id
        self.events: list[ServerSentEvent] = []
        self.pings = 0
        self.worker = ""
        self.changed = asyncio.Event()
        self.stack = contextlib.AsyncExitStack()
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        headers = (
            {"last-event-id": self.decoder.last_event_id} if self.decoder.last_event_id else {}
        )
        response = await self.stack.enter_async_context(
            self.http.stream("GET", "/events/room?heartbeat=0.2", headers=headers)
        )
        assert response.status_code == 200
        self.worker = response.headers["x-worker"]
        self.task = asyncio.create_task(self._read(response.aiter_raw()))

    async def _read(self, chunks: AsyncIterator[bytes]) -> None:
        async for chunk in chunks:
            self.pings += chunk.count(b": ping\n\n")
            self.events.extend(self.decoder.feed(chunk))
            self.changed.set()

    def data(self) -> list[str | None]:
        return [e.data for e in self.events if e.event is None]

    async def until(self, what: str, count: int) -> None:
        async with asyncio.timeout(30):
            while (self.pings if what == "pings" else len(self.data())) < count:
                assert self.task is not None and not self.task.done(), "the stream ended"
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        """Stop reading and close the connection (an error it ended with is dropped:
        the test checks what was received, and that streams did not end, elsewhere)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await self.task
        await self.stack.aclose()


async def publish(http: httpx.AsyncClient, data: str) -> httpx.Response:
    # A connection of its own: a kept-alive one may be closed by the server meanwhile.
    headers = {"connection": "close"}
    return await http.post("/publish/room", content=data.encode(), headers=headers)


async def reader_connections(client: Any) -> list[dict[str, Any]]:
    try:
        listed = await client.client_list()
    except redis.exceptions.ConnectionError:  # a pooled connection from before a restart
        listed = await client.client_list()
    return [c for c in listed if c.get("name") == "streamfx-reader"]


async def until_readers(client: Any, count: int, command: str = "") -> list[dict[str, Any]]:
    """Until `count` reading connections exist (each last running `command`, if given)."""
    async with asyncio.timeout(60):
        while True:
            found = await reader_connections(client)
            if len(found) == count and all(c["cmd"] == command for c in found if command):
                return found
            await asyncio.sleep(0.05)  # other processes: nothing here to wait on


async def test_four_workers_share_topics_through_redis() -> None:
    server = RedisServer()
    server.start()
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "tests.apps.broadcast_app:app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS),
        "--log-level", "warning", "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip
    env = {"STREAMFX_REDIS_URL": server.url, "STREAMFX_REDIS_PREFIX": "workers:"}
    admin = redis.asyncio.Redis.from_url(server.url)
    clients: list[Client] = []
    try:
        async with (
            serve_command(argv, port, env) as (host, port),
            httpx.AsyncClient(
                base_url=f"http://{host}:{port}",
                timeout=30,
                limits=httpx.Limits(max_connections=200),
            ) as http,
        ):
            await until_readers(admin, WORKERS)
            while len({c.worker for c in clients}) < WORKERS:
                assert len(clients) < 150, "the kernel never handed a connection to a worker"
                clients.append(Client(http))
                await clients[-1].connect()

            # one reading connection per process, each blocked in its one XREAD
            readers = await until_readers(admin, WORKERS, "xread")
            assert len({r["id"] for r in readers}) == WORKERS

            accepted = []
            for n in range(5):
                response = await publish(http, f"m{n}")
                assert response.status_code == 200
                accepted.append(f"m{n}")
            for client in clients:
                await client.until("data", 5)
                assert client.data() == accepted, "every worker's subscribers got each once"

            leaving = clients.pop(0)
            await leaving.close()
            for n in range(5, 8):
                assert (await publish(http, f"m{n}")).status_code == 200
                accepted.append(f"m{n}")
            while True:  # reconnect until another worker serves the client
                again = Client(http, leaving.decoder.last_event_id)
                await again.connect()
                if again.worker != leaving.worker:
                    break
                await again.close()
            await again.until("data", 3)
            assert again.data() == ["m5", "m6", "m7"], "resumed on another worker, no gap"
            clients.append(again)
            for client in clients[:-1]:
                await client.until("data", 8)

            await asyncio.to_thread(server.stop)
            refused = await publish(http, "while away")
            assert refused.status_code == 503
            for client in clients:  # still connected: heartbeats go on
                await client.until("pings", client.pings + 2)
            received = [len(client.data()) for client in clients]
            await asyncio.to_thread(server.start)
            await until_readers(admin, WORKERS)  # every worker's reader is back
            for _ in range(100):  # a worker may not have dropped its dead pool yet: 503
                if (await publish(http, "m8")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("no worker accepted a publish after the restart")
            accepted.append("m8")
            for client, count in zip(clients, received, strict=True):
                await client.until("data", count + 1)
                assert client.data()[-1] == "m8", "an accepted publish after the restart"
                assert [e.data for e in client.events if e.event == "reset"] == ["lost"]
            assert clients[0].data() == accepted, "nothing accepted was lost"
            for client in clients:
                await client.close()
    finally:
        for client in clients:
            await client.close()
        await admin.aclose()
        server.stop()
