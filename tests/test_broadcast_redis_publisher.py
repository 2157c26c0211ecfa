"""`Publisher` through `RedisStreamsBackend` on a real redis-server: concurrent publishes
keep their call order and share round trips; each gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from streamfx.broadcast import Broadcast, BroadcastError, RedisStreamsBackend
from streamfx.broadcast._redis_store import FIELD, parse_known
from tests._redis import RedisServer, redis_prefix, redis_server

__all__ = ["redis_prefix", "redis_server"]  # fixtures

CONCURRENT = 200


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the test's own, to look at what the hub wrote."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


def hub_on(server: RedisServer, prefix: str, **kwargs: Any) -> Broadcast:
    return Broadcast(backend=RedisStreamsBackend(server.url, prefix=prefix, **kwargs))


async def connections_received(client: redis.asyncio.Redis) -> int:
    stats = await client.info("stats")
    return int(stats["total_connections_received"])


async def stream(
    client: redis.asyncio.Redis, key: str, start: str = "-"
) -> list[tuple[str, bytes]]:
    """The entries of `key` from `start` as ``(id, stored body)`` pairs."""
    entries: Any = await client.xrange(key, start, "+")
    return [(entry_id.decode(), fields[FIELD]) for entry_id, fields in entries]


async def test_concurrent_publishes_keep_call_order_on_one_connection(
    redis_server: RedisServer, redis_prefix: str, client: redis.asyncio.Redis
) -> None:
    async with hub_on(redis_server, redis_prefix) as hub:
        await hub.publish("t", "warm-up")  # the command connection exists now
        await client.config_resetstat()
        connected = await connections_received(client)
        ids = await asyncio.gather(*(hub.publish("t", f"n{n}") for n in range(CONCURRENT)))
        assert await connections_received(client) - connected <= 1, "pipelined, not pooled"
        stats = await client.info("commandstats")
        assert stats["cmdstat_xadd"]["calls"] == CONCURRENT
        parsed = [parse_known(entry_id) for entry_id in ids]
        assert parsed == sorted(parsed) and len(set(parsed)) == CONCURRENT
        stored = await stream(client, redis_prefix + "t", ids[0])
        assert [entry_id for entry_id, _ in stored] == ids
        assert [body for _, body in stored] == [f"data: n{n}\n".encode() for n in range(CONCURRENT)]


@pytest.mark.parametrize("ttl", [None, 60])
async def test_a_refused_publish_fails_alone(
    redis_server: RedisServer, redis_prefix: str, client: redis.asyncio.Redis, ttl: int | None
) -> None:
    """Also inside one MULTI/EXEC (with `ttl`): the others in its batch are stored."""
    await client.set(redis_prefix + "not-a-stream", "x")
    async with hub_on(redis_server, redis_prefix, ttl=ttl) as hub:
        await hub.publish("t", "warm-up")
        outcomes = await asyncio.gather(
            hub.publish("t", "a"),
            hub.publish("t", "b"),
            hub.publish("not-a-stream", "refused"),
            hub.publish("t", "c"),
            return_exceptions=True,
        )
        assert isinstance(outcomes[2], BroadcastError)
        assert "WRONGTYPE" in str(outcomes[2])
        assert all(isinstance(outcome, str) for n, outcome in enumerate(outcomes) if n != 2)
        assert await client.xlen(redis_prefix + "t") == 4


async def test_concurrent_publishes_with_ttl_each_set_the_expiry(
    redis_server: RedisServer, redis_prefix: str, client: redis.asyncio.Redis
) -> None:
    async with hub_on(redis_server, redis_prefix, ttl=60) as hub:
        await asyncio.gather(*(hub.publish(f"t{n % 5}", str(n)) for n in range(50)))
        for n in range(5):
            assert 0 < await client.pttl(f"{redis_prefix}t{n}") <= 60_000
            assert await client.xlen(f"{redis_prefix}t{n}") == 10


async def test_a_cancelled_publisher_does_not_cancel_the_write(
    redis_server: RedisServer, redis_prefix: str, client: redis.asyncio.Redis
) -> None:
    async with hub_on(redis_server, redis_prefix) as hub:
        first = asyncio.create_task(hub.publish("t", "first"))
        cancelled = asyncio.create_task(hub.publish("t", "cancelled"))
        last = asyncio.create_task(hub.publish("t", "last"))
        await asyncio.sleep(0)  # all three are queued or on their way
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert parse_known(await first) < parse_known(await last)
        stored = await stream(client, redis_prefix + "t")
        assert [body for _, body in stored] == [
            b"data: first\n",
            b"data: cancelled\n",
            b"data: last\n",
        ]


async def test_publishing_while_redis_is_away_fails_every_waiting_publish() -> None:
    from tests._redis import RedisServer

    server = RedisServer()
    server.start()
    try:
        async with hub_on(server, "t:") as hub:
            await hub.publish("t", "before")
            server.stop()
            outcomes = await asyncio.gather(
                *(hub.publish("t", str(n)) for n in range(5)), return_exceptions=True
            )
            assert all(isinstance(outcome, BroadcastError) for outcome in outcomes)
    finally:
        server.stop()
