"""`WireConnection` on a real redis-server: connects as the URL says (password, db,
unix socket), names itself, returns replies as hiredis parsed them, and fails with
redis-py's errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from streamfx.broadcast._redis_store import unreachable
from streamfx.broadcast._redis_wire import WireConnection
from tests._redis import RedisServer, redis_server

__all__ = ["redis_server"]  # fixtures

WITHIN = 5.0


async def named(url: str, name: str) -> list[dict[str, str]]:
    """What CLIENT LIST says of the connections called `name`."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        clients: list[dict[str, str]] = await client.client_list()
    finally:
        await client.aclose()
    return [info for info in clients if info.get("name") == name]


async def test_it_selects_the_db_and_names_itself(redis_server: RedisServer) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    wire = await WireConnection.open(url, "wire-test-db", WITHIN)
    try:
        assert await wire.call("PING", within=WITHIN) == b"PONG"
        (info,) = await named(redis_server.url, "wire-test-db")
        assert str(info["db"]) == "3"
        assert str(info["id"]) == str(await wire.call("CLIENT", "ID", within=WITHIN))
    finally:
        wire.close()


async def test_an_error_reply_raises_and_the_connection_goes_on(
    redis_server: RedisServer,
) -> None:
    wire = await WireConnection.open(redis_server.url, "wire-test-error", WITHIN)
    try:
        with pytest.raises(ResponseError, match="unknown command"):
            await wire.call("NO-SUCH-COMMAND", within=WITHIN)
        assert await wire.call("ECHO", "still here", within=WITHIN) == b"still here"
        reply = await wire.call("XRANGE", "wire-test-missing", "-", "+", within=WITHIN)
        assert reply == []
    finally:
        wire.close()


async def test_a_blocked_read_that_outlives_its_time_is_a_timeout(
    redis_server: RedisServer,
) -> None:
    wire = await WireConnection.open(redis_server.url, "wire-test-timeout", WITHIN)
    try:
        with pytest.raises(TimeoutError) as caught:
            await wire.call("BLPOP", "wire-test-nothing", "5", within=0.2)
        assert unreachable(caught.value)
    finally:
        wire.close()


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server with a password, also listening on a unix socket."""
    socket_path = tmp_path_factory.mktemp("redis") / "redis.sock"
    server = RedisServer("--unixsocket", str(socket_path))
    server.socket_path = socket_path  # type: ignore[attr-defined]
    server.start()  # it checks with a PING that needs no password
    try:
        server.command("CONFIG", "SET", "requirepass", "s3cret")
        yield server
    finally:
        server.stop()


async def test_it_authenticates_over_tcp_and_unix_sockets(locked_redis: RedisServer) -> None:
    with pytest.raises(ResponseError):  # no password: refused
        await WireConnection.open(locked_redis.url, "wire-test-auth", WITHIN)
    socket_path: Path = locked_redis.socket_path  # type: ignore[attr-defined]
    for url in (
        f"redis://:s3cret@127.0.0.1:{locked_redis.port}/0",
        f"redis://default:s3cret@127.0.0.1:{locked_redis.port}/0",
        f"unix://:s3cret@{socket_path}?db=0",
    ):
        wire = await WireConnection.open(url, "wire-test-auth", WITHIN)
        try:
            assert await wire.call("PING", within=WITHIN) == b"PONG", url
        finally:
            wire.close()


async def test_a_server_that_goes_away_is_a_connection_error() -> None:
    server = RedisServer()
    server.start()
    try:
        wire = await WireConnection.open(server.url, "wire-test-gone", WITHIN)
        blocked = asyncio.create_task(wire.call("BLPOP", "wire-test-nothing", "0", within=WITHIN))
        await asyncio.sleep(0)  # the command is on its way
        server.stop()
        with pytest.raises(ConnectionError) as caught:
            await blocked
        assert unreachable(caught.value)
        wire.close()
    finally:
        server.stop()
    with pytest.raises(ConnectionError):
        await WireConnection.open(server.url, "wire-test-gone", WITHIN)
