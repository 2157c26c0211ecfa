"""`RedisStreamsBackend` on a real redis-server: one reader per process, replay from the
stream, untrusted ids, and Redis stopped and restarted under live subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio

from streamfx.broadcast import Broadcast, BroadcastError, RedisStreamsBackend
from streamfx.broadcast._frames import encode_body
from streamfx.broadcast._redis_store import FIELD
from streamfx.metrics import NullMetrics, set_metrics
from tests._broadcast_reader import Collector, until_waiting
from tests._redis import RedisServer, exact_redis, redis_prefix, redis_server

__all__ = ["exact_redis", "redis_prefix", "redis_server"]  # fixtures


def hub_on(server: RedisServer, prefix: str, **kwargs: Any) -> Broadcast:
    history = kwargs.pop("stream_history", 10_000)
    backend = RedisStreamsBackend(server.url, prefix=prefix, history=history)
    return Broadcast(backend=backend, **kwargs)


class HealthWatch(NullMetrics):
    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.reports: list[bool] = []

    def broadcast_health(self, name: str, healthy: bool) -> None:
        self.reports.append(healthy)
        self.changed.set()

    async def until(self, hub: Broadcast, healthy: bool) -> None:
        async with asyncio.timeout(30):
            while hub.healthy is not healthy:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def health() -> Iterator[HealthWatch]:
    watch = HealthWatch()
    previous = set_metrics(watch)
    yield watch
    set_metrics(previous)


async def test_a_publish_reaches_every_subscriber_once_through_the_reader(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    async with hub_on(redis_server, redis_prefix) as hub:
        assert hub.healthy
        collectors = [Collector(hub.subscribe("t", heartbeat=None)) for _ in range(3)]
        await asyncio.gather(*(c.started() for c in collectors))
        ids = [await hub.publish("t", f"e{n}") for n in range(20)]
        for collector in collectors:
            await collector.until_data(20)
            assert collector.data() == [f"e{n}" for n in range(20)], "once each, in order"
            assert collector.decoder.last_event_id == ids[-1]
            await collector.close()


async def test_a_burst_read_in_one_xread_reaches_waiting_subscribers_whole(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """100 entries added in one transaction come back in one XREAD reply and are
    appended in one loop turn: 25 times `buffer`. Subscribers that were waiting for
    their next frame are not behind: each takes the whole burst in one write."""
    async with hub_on(redis_server, redis_prefix, buffer=4, history=200) as hub:
        collectors = [Collector(hub.subscribe("t", heartbeat=None)) for _ in range(3)]
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            await asyncio.gather(*(c.started() for c in collectors))
            await until_waiting(hub, 3)
            started = [c.chunks for c in collectors]  # one or two: the start may wait
            async with client.pipeline(transaction=True) as pipe:
                for n in range(100):  # the bytes hub.publish would store
                    pipe.xadd(redis_prefix + "t", {FIELD: encode_body(str(n), None, None)})
                await pipe.execute()
            for collector, before in zip(collectors, started, strict=True):
                await collector.until(lambda c=collector, b=before: c.chunks > b)  # type: ignore[misc]
                assert [e.event for e in collector.events] == [None] * 100, "no overflow"
                assert collector.data() == [str(n) for n in range(100)]
                assert collector.chunks == before + 1, "the whole burst in one write"
        finally:
            await client.aclose()
            for collector in collectors:
                await collector.close()


async def test_one_reading_connection_whose_xread_is_woken_not_cancelled(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)

    async def readers() -> list[dict[str, Any]]:
        return [c for c in await client.client_list() if c.get("name") == "streamfx-reader"]

    async def unblocks() -> int:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_client|unblock", {}).get("calls", 0))

    try:
        before = await readers()
        unblocked = await unblocks()
        async with hub_on(redis_server, redis_prefix) as hub:
            collectors = []
            ids = set()
            for topic in ("a", "b", "c", "d", "e"):
                collectors.append(Collector(hub.subscribe(topic, heartbeat=None)))
                await collectors[-1].started()
                await hub.publish(topic, topic)  # reaches it: the new topic is being read
                await collectors[-1].until_data(1)
                assert collectors[-1].data() == [topic]
                mine = [c for c in await readers() if c not in before]
                assert len(mine) == 1, "one reading connection for the whole process"
                ids.add(mine[0]["id"])
            assert len(ids) == 1, "the XREAD was woken and re-issued on the same connection"
            assert mine[0]["cmd"] == "xread"
            assert await unblocks() > unblocked, "woken with CLIENT UNBLOCK"
            for collector in collectors:
                await collector.close()
    finally:
        await client.aclose()


async def test_a_resume_older_than_the_process_log_is_replayed_from_the_stream(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    async with hub_on(redis_server, redis_prefix, buffer=2, history=3) as hub:
        first = Collector(hub.subscribe("t", heartbeat=None))
        await first.started()
        await hub.publish("t", "seen")
        await first.until_data(1)
        position = first.decoder.last_event_id
        await first.close()  # nobody follows "t" here any more: its log is dropped
        ids = [await hub.publish("t", f"missed {n}") for n in range(6)]
        again = Collector(hub.subscribe("t", last_event_id=position, heartbeat=None))
        await again.until_data(6)
        assert again.data() == [f"missed {n}" for n in range(6)], "more than the log holds"
        assert again.decoder.last_event_id == ids[-1]
        await hub.publish("t", "live")
        await again.until_data(7)
        assert [e.event for e in again.events] == [None] * 7
        await again.close()


async def test_ids_redis_cannot_honour_get_exactly_one_reset(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    async with hub_on(redis_server, redis_prefix, stream_history=1) as hub:
        trimmed = await hub.publish("t", "old")
        for n in range(300):  # MAXLEN ~ 1 trims whole nodes of 100 entries
            await hub.publish("t", str(n))
        bad = [
            trimmed,
            "garbage",
            "x" * 5000,
            "\uff11-0",  # a digit, but not one Redis takes
            f"{2**64}-0",
            "99999999999999-0",  # not in the stream (yet)
            "1-0",
        ]
        for last_event_id in bad:
            collector = Collector(hub.subscribe("t", last_event_id=last_event_id, heartbeat=0.05))
            await collector.started()
            assert [e.event for e in collector.events] == ["reset"], last_event_id
            await collector.close()


async def test_publishing_or_subscribing_before_start_is_refused(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    hub = hub_on(redis_server, redis_prefix)
    with pytest.raises(BroadcastError, match="async with hub"):
        await hub.publish("t", "x")
    with pytest.raises(BroadcastError, match="async with hub"):
        await anext(hub.subscribe("t"))
    with pytest.raises(ValueError, match="one Broadcast"):
        Broadcast(backend=hub._backend)


async def test_ttl_makes_streams_expire(redis_server: RedisServer, redis_prefix: str) -> None:
    backend = RedisStreamsBackend(redis_server.url, prefix=redis_prefix, ttl=60)
    async with Broadcast(backend=backend) as hub:
        await hub.publish("t", "x")
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        assert 0 < await client.pttl(redis_prefix + "t") <= 60_000
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"url": ""}, TypeError),
        ({"url": "redis://x", "history": 0}, ValueError),
        ({"url": "redis://x", "ttl": 0}, ValueError),
        ({"url": "redis://x", "ttl": "1"}, TypeError),
        ({"url": "redis://x", "prefix": None}, TypeError),
    ],
)
def test_bad_backend_settings_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RedisStreamsBackend(**kwargs)


async def test_a_client_resumes_on_another_process_without_gap(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """Two hubs on one prefix stand for two processes."""
    async with hub_on(redis_server, redis_prefix) as one, hub_on(redis_server, redis_prefix) as two:
        here = Collector(one.subscribe("t", heartbeat=None))
        await here.started()
        for n in range(5):
            await two.publish("t", str(n))
        await here.until_data(5)
        position = here.decoder.last_event_id
        await here.close()
        await one.publish("t", "5")
        there = Collector(two.subscribe("t", last_event_id=position, heartbeat=None))
        await there.until_data(1)
        await two.publish("t", "6")
        await there.until_data(2)
        assert there.data() == ["5", "6"]
        await there.close()


async def test_redis_stopped_and_restarted_mid_stream(health: HealthWatch) -> None:
    server = RedisServer()
    server.start()
    try:
        async with hub_on(server, "restart:") as hub:
            collectors = [Collector(hub.subscribe("t", heartbeat=0.05)) for _ in range(3)]
            for collector in collectors:
                await collector.started()
            accepted = [await hub.publish("t", f"before {n}") for n in range(5)]
            for collector in collectors:
                await collector.until_data(5)

            await asyncio.to_thread(server.stop)
            await health.until(hub, False)
            with pytest.raises(BroadcastError):
                await hub.publish("t", "while away")
            for collector in collectors:  # still connected: heartbeats go on
                await collector.until_ping()

            await asyncio.to_thread(server.start)
            await health.until(hub, True)
            accepted += [await hub.publish("t", f"after {n}") for n in range(5)]
            for collector in collectors:
                await collector.until_data(10)
                assert collector.data() == [f"before {n}" for n in range(5)] + [
                    f"after {n}" for n in range(5)
                ], "no accepted publish is lost"
                resets = [e for e in collector.events if e.event == "reset"]
                assert [e.data for e in resets] == ["lost"], "the restart wiped the stream"
                assert not collector.task.done(), "no subscriber crashed"
                assert collector.decoder.last_event_id == accepted[-1]
            for collector in collectors:
                await collector.close()
        assert health.reports[:3] == [True, False, True]
    finally:
        server.stop()


async def test_health_follows_redis_even_with_no_subscriber(health: HealthWatch) -> None:
    server = RedisServer()
    server.start()
    try:
        async with hub_on(server, "health:") as hub:
            assert hub.healthy
            await asyncio.to_thread(server.stop)
            await health.until(hub, False)
            await asyncio.to_thread(server.start)
            await health.until(hub, True)
            assert await hub.publish("t", "back")
    finally:
        server.stop()


@pytest.mark.parametrize("burst", [3, 10])
async def test_entries_trimmed_between_two_reads_reset_live_subscribers(
    exact_redis: RedisServer, redis_prefix: str, burst: int
) -> None:
    """One transaction adds `burst` entries to a stream that keeps 3: the reader's next
    XREAD finds only the last 3. When the burst was longer than that, every waiting
    subscriber gets exactly one ``reset`` and then what is left; when it was exactly
    that long, nothing was lost and nobody gets a reset."""
    async with hub_on(exact_redis, redis_prefix, stream_history=3) as hub:
        collectors = [Collector(hub.subscribe("t", heartbeat=None)) for _ in range(2)]
        client = redis.asyncio.Redis.from_url(exact_redis.url)
        try:
            await asyncio.gather(*(c.started() for c in collectors))
            await hub.publish("t", "before")
            for collector in collectors:
                await collector.until_data(1)
            await until_waiting(hub, 2)
            async with client.pipeline(transaction=True) as pipe:
                for n in range(burst):  # the bytes and the trimming of hub.publish
                    body = encode_body(str(n), None, None)
                    pipe.xadd(redis_prefix + "t", {FIELD: body}, maxlen=3)
                ids = await pipe.execute()
            kept = [str(n) for n in range(burst - 3, burst)]
            lost = burst > 3
            for collector in collectors:
                await collector.until_data(1 + 3)
                events = [(e.event, e.data) for e in collector.events]
                gap = [("reset", "lost")] if lost else []
                assert events == [(None, "before"), *gap, *((None, d) for d in kept)]
                assert collector.decoder.last_event_id == ids[-1].decode()
            await hub.publish("t", "live")
            for collector in collectors:
                await collector.until_data(1 + 4)
                assert collector.data()[-1] == "live"
                assert [e.event for e in collector.events].count("reset") == lost
        finally:
            await client.aclose()
            for collector in collectors:
                await collector.close()


async def test_a_burst_longer_than_one_xread_reply_loses_nothing_and_resets_nobody(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """2,500 entries in one transaction on a stream that keeps 10,000: the reader takes
    them in replies of READ_COUNT (1,000), each long enough to be checked for a gap; as
    nothing was trimmed, the waiting subscriber gets all of them and no ``reset``."""
    async with hub_on(redis_server, redis_prefix, history=5000) as hub:
        collector = Collector(hub.subscribe("t", heartbeat=None))
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            await collector.started()
            await hub.publish("t", "before")
            await collector.until_data(1)
            async with client.pipeline(transaction=True) as pipe:
                for n in range(2500):
                    body = encode_body(str(n), None, None)
                    pipe.xadd(redis_prefix + "t", {FIELD: body}, maxlen=10_000)
                ids = await pipe.execute()
            await collector.until_data(2501)
            assert collector.data() == ["before", *(str(n) for n in range(2500))]
            assert [e.event for e in collector.events] == [None] * 2501, "no reset"
            assert collector.decoder.last_event_id == ids[-1].decode()
        finally:
            await client.aclose()
            await collector.close()


async def test_a_resume_from_the_stream_costs_one_xrange(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """The entry named by the id and those after it come in one ``XRANGE``: the entry
    being there is what honours the id, so no second round trip checks it first."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        async with hub_on(redis_server, redis_prefix, buffer=2, history=3) as hub:
            position = await hub.publish("t", "seen")
            ids = [await hub.publish("t", f"missed {n}") for n in range(6)]
            await client.config_resetstat()
            again = Collector(hub.subscribe("t", last_event_id=position, heartbeat=None))
            await again.until_data(6)
            assert again.data() == [f"missed {n}" for n in range(6)], "more than the log holds"
            assert again.decoder.last_event_id == ids[-1]
            stats = await client.info("commandstats")
            assert stats["cmdstat_xrange"]["calls"] == 1
            await again.close()
    finally:
        await client.aclose()
