"""The in-process hub: publishing, encoding once, resuming, overflow, closing, leaks."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import streamfx
from streamfx import ServerSentEvent, SSEDecoder, StreamResponse
from streamfx.broadcast import Broadcast, BroadcastError
from streamfx.broadcast._log import TopicLog
from streamfx.metrics import InMemoryMetrics
from tests._broadcast_reader import Collector, until_waiting


@pytest.fixture(autouse=True)
def clean_shutdown_flag() -> Iterator[None]:
    streamfx.reset_shutdown()
    yield
    streamfx.reset_shutdown()


def events_of(chunk: bytes, decoder: SSEDecoder | None = None) -> list[ServerSentEvent]:
    return (decoder or SSEDecoder()).feed(chunk)


async def next_chunk(body: AsyncIterator[bytes]) -> bytes:
    async with asyncio.timeout(5):
        return await anext(body)


async def test_publish_returns_ids_that_increase_per_topic() -> None:
    hub = Broadcast()
    first = [await hub.publish("a", n) for n in range(3)]
    other = await hub.publish("b", "x")
    numbers = [int(event_id.rsplit("-", 1)[1]) for event_id in first]
    assert numbers == [1, 2, 3]
    assert other.rsplit("-", 1)[0] != first[0].rsplit("-", 1)[0], "ids name their topic"


async def test_items_are_encoded_as_sse_would() -> None:
    hub = Broadcast()
    body = hub.subscribe("t", heartbeat=None)
    await next_chunk(body)
    await hub.publish("t", "two\nlines")
    await hub.publish("t", {"price": 1.5, "name": "é"})
    await hub.publish("t", ServerSentEvent("x", event="tick", retry=500, comment="note"))
    await hub.publish("t", "typed", event="update")
    chunk = await next_chunk(body)
    events = events_of(chunk)
    assert [(e.event, e.data) for e in events] == [
        (None, "two\nlines"),
        (None, '{"price":1.5,"name":"é"}'),
        ("tick", "x"),
        ("update", "typed"),
    ]
    assert events[2].retry == 500
    assert b": note\n" in chunk
    await body.aclose()  # type: ignore[attr-defined]


async def test_serialize_is_called_once_per_publish_with_1000_subscribers() -> None:
    calls: list[object] = []

    def serialize(item: object) -> str:
        calls.append(item)
        return f"item {item}"

    hub = Broadcast(serialize=serialize)
    bodies = [hub.subscribe("t", heartbeat=None) for _ in range(1000)]
    for body in bodies:
        await next_chunk(body)
    for n in range(5):
        await hub.publish("t", n)
    assert calls == [0, 1, 2, 3, 4], "one encoding per publish, not one per subscriber"
    for body in bodies:
        chunk = await next_chunk(body)
        assert [e.data for e in events_of(chunk)] == [f"item {n}" for n in range(5)]
        await body.aclose()  # type: ignore[attr-defined]
    assert hub.subscribers == 0


@pytest.mark.parametrize(
    ("item", "kwargs", "error"),
    [
        (b"data: raw\n\n", {}, TypeError),
        (bytearray(b"x"), {}, TypeError),
        (ServerSentEvent("x", id="7"), {}, ValueError),
        (ServerSentEvent("x", event="a"), {"event": "b"}, ValueError),
        ("x", {"event": "bad\nname"}, ValueError),
        (object(), {}, TypeError),
    ],
)
async def test_bad_items_are_refused_and_nothing_is_published(
    item: object, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    hub = Broadcast()
    body = hub.subscribe("t", heartbeat=None)
    await next_chunk(body)
    with pytest.raises(error):
        await hub.publish("t", item, **kwargs)
    event_id = await hub.publish("t", "fine")
    assert event_id.endswith("-1"), "the refused item took no id"
    assert [e.data for e in events_of(await next_chunk(body))] == ["fine"]
    await body.aclose()  # type: ignore[attr-defined]


async def test_serialize_must_return_an_event_or_a_str() -> None:
    hub = Broadcast(serialize=lambda item: b"bytes")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="ServerSentEvent or a str"):
        await hub.publish("t", 1)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"buffer": 0}, ValueError),
        ({"buffer": -1}, ValueError),
        ({"buffer": 1.5}, TypeError),
        ({"buffer": True}, TypeError),
        ({"history": 0}, ValueError),
        ({"buffer": 10, "history": 5}, ValueError),
        ({"overflow": "drop"}, ValueError),
        ({"serialize": "json"}, TypeError),
        ({"max_topics": 0}, ValueError),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Broadcast(**kwargs)


@pytest.mark.parametrize(
    ("topic", "error"), [("", ValueError), ("x" * 257, ValueError), (7, TypeError)]
)
async def test_bad_topics_are_refused(topic: Any, error: type[Exception]) -> None:
    hub = Broadcast()
    with pytest.raises(error):
        await hub.publish(topic, "x")
    with pytest.raises(error):
        hub.subscribe(topic)
    with pytest.raises(ValueError):
        hub.subscribe(["a", "a"])
    with pytest.raises(ValueError):
        hub.subscribe([])


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"heartbeat": 0}, ValueError),
        ({"heartbeat": float("inf")}, ValueError),
        ({"heartbeat": "1"}, TypeError),
        ({"retry": -1}, ValueError),
        ({"last_event_id": 5}, TypeError),
    ],
)
def test_bad_subscription_arguments_are_refused(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Broadcast().sse("t", **kwargs)


async def test_sse_is_an_event_stream_response() -> None:
    hub = Broadcast()
    response = hub.sse("t", retry=2000, heartbeat=None)
    assert isinstance(response, StreamResponse)
    assert response.status == 200
    assert response.header("content-type") == "text/event-stream; charset=utf-8"
    body = response.body
    first = await next_chunk(body)  # type: ignore[arg-type]
    assert first.startswith(b"retry: 2000\n\n")
    await response.aclose()


async def test_a_reconnect_resumes_with_nothing_lost_or_repeated() -> None:
    hub = Broadcast()
    decoder = SSEDecoder()
    body = hub.subscribe("t", heartbeat=None)
    events_of(await next_chunk(body), decoder)
    await hub.publish("t", "1")
    await hub.publish("t", "2")
    assert [e.data for e in events_of(await next_chunk(body), decoder)] == ["1", "2"]
    await body.aclose()  # type: ignore[attr-defined]
    for n in range(3, 6):
        await hub.publish("t", str(n))
    body = hub.subscribe("t", last_event_id=decoder.last_event_id, heartbeat=None)
    assert [e.data for e in events_of(await next_chunk(body), decoder)] == ["3", "4", "5"]
    await hub.publish("t", "6")
    assert [e.data for e in events_of(await next_chunk(body), decoder)] == ["6"]
    await body.aclose()  # type: ignore[attr-defined]


async def test_a_reconnect_before_the_first_event_resumes_too() -> None:
    hub = Broadcast()
    decoder = SSEDecoder()
    body = hub.subscribe("t", heartbeat=None)
    assert events_of(await next_chunk(body), decoder) == []
    assert decoder.last_event_id, "the start names the subscriber's position"
    await body.aclose()  # type: ignore[attr-defined]
    await hub.publish("t", "while away")
    body = hub.subscribe("t", last_event_id=decoder.last_event_id, heartbeat=None)
    assert [e.data for e in events_of(await next_chunk(body))] == ["while away"]
    await body.aclose()  # type: ignore[attr-defined]


async def resets_for(hub: Broadcast, topic: str, last_event_id: str | None) -> list[str | None]:
    body = hub.subscribe(topic, last_event_id=last_event_id, heartbeat=None)
    try:
        return [e.event for e in events_of(await next_chunk(body))]
    finally:
        await body.aclose()  # type: ignore[attr-defined]


async def test_ids_that_cannot_be_honoured_get_exactly_one_reset() -> None:
    hub = Broadcast(buffer=2, history=3)
    first = await hub.publish("t", "0")
    other_topic = await hub.publish("u", "0")
    other_hub = await Broadcast().publish("t", "0")
    for n in range(1, 5):
        await hub.publish("t", str(n))
    epoch = first.rsplit("-", 1)[0]
    for bad in [
        first,  # older than the history
        other_topic,
        other_hub,
        f"{epoch}-99",  # not published yet
        f"{epoch}-1x",
        "garbage",
        "x" * 10_000,
        "\x00",
        "-",
        f"{epoch}-{'9' * 40}",
    ]:
        assert await resets_for(hub, "t", bad) == ["reset"], bad
    assert await resets_for(hub, "t", None) == []
    assert await resets_for(hub, "t", "") == [], "an empty header is no header"


async def test_the_reset_names_a_position_to_resume_from() -> None:
    hub = Broadcast()
    decoder = SSEDecoder()
    await hub.publish("t", "old")
    body = hub.subscribe("t", last_event_id="garbage", heartbeat=None)
    events = events_of(await next_chunk(body), decoder)
    assert [(e.event, e.data) for e in events] == [("reset", "unknown")]
    await body.aclose()  # type: ignore[attr-defined]
    await hub.publish("t", "new")
    body = hub.subscribe("t", last_event_id=decoder.last_event_id, heartbeat=None)
    assert [e.data for e in events_of(await next_chunk(body))] == ["new"]
    await body.aclose()  # type: ignore[attr-defined]


async def test_disconnect_mode_sends_overflow_with_a_jittered_retry_and_ends(
    metrics: InMemoryMetrics,
) -> None:
    hub = Broadcast(buffer=2, history=4, name="hub")
    decoder = SSEDecoder()
    body = hub.subscribe("t", heartbeat=None, retry=400)
    events_of(await next_chunk(body), decoder)
    await hub.publish("t", "1")
    events_of(await next_chunk(body), decoder)
    position = decoder.last_event_id
    for n in range(2, 5):
        await hub.publish("t", str(n))
    events = events_of(await next_chunk(body), decoder)
    assert [(e.event, e.data) for e in events] == [("overflow", "behind")]
    assert events[0].retry is not None and 400 <= events[0].retry < 800
    with pytest.raises(StopAsyncIteration):
        await next_chunk(body)
    assert decoder.last_event_id == position, "the client resumes from what it received"
    assert metrics.broadcast["hub", "overflows"] == 1
    again = hub.subscribe("t", last_event_id=position, heartbeat=None)
    assert [e.data for e in events_of(await next_chunk(again))] == ["2", "3", "4"]
    await again.aclose()  # type: ignore[attr-defined]


async def test_sliding_mode_skips_the_oldest_with_one_reset(metrics: InMemoryMetrics) -> None:
    hub = Broadcast(buffer=2, history=4, overflow="sliding", name="hub")
    body = hub.subscribe("t", heartbeat=None)
    await next_chunk(body)
    for n in range(1, 6):
        await hub.publish("t", str(n))
    events = events_of(await next_chunk(body))
    assert [(e.event, e.data) for e in events] == [("reset", "skipped"), (None, "4"), (None, "5")]
    assert metrics.dropped["broadcast", "hub"] == 3
    assert metrics.broadcast["hub", "resets"] == 1
    await body.aclose()  # type: ignore[attr-defined]


async def test_latest_mode_sends_only_the_newest(metrics: InMemoryMetrics) -> None:
    hub = Broadcast(buffer=2, history=4, overflow="latest")
    body = hub.subscribe("t", heartbeat=None)
    await next_chunk(body)
    await hub.publish("t", "1")
    await hub.publish("t", "2")
    assert [e.data for e in events_of(await next_chunk(body))] == ["1", "2"], "within buffer"
    for n in range(3, 8):
        await hub.publish("t", str(n))
    assert [(e.event, e.data) for e in events_of(await next_chunk(body))] == [(None, "7")]
    assert metrics.dropped["broadcast", ""] == 4
    await body.aclose()  # type: ignore[attr-defined]


async def test_a_slow_subscriber_does_not_slow_the_publisher_or_the_others() -> None:
    hub = Broadcast(buffer=4, history=8)
    slow = hub.subscribe("t", heartbeat=None)
    fast = hub.subscribe("t", heartbeat=None)
    await next_chunk(slow)
    await next_chunk(fast)
    for n in range(100):
        await hub.publish("t", str(n))  # never waits for anyone
        if n % 3 == 0:
            events_of(await next_chunk(fast))
    assert [e.event for e in events_of(await next_chunk(slow))] == ["overflow"]
    await slow.aclose()  # type: ignore[attr-defined]
    await fast.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("overflow", "stuck_gets", "dropped"),
    [
        ("disconnect", [("overflow", "behind")], 0),
        ("sliding", [("reset", "skipped")] + [(None, str(n)) for n in range(96, 100)], 96),
        ("latest", [(None, "99")], 99),
    ],
)
async def test_a_burst_reaches_waiting_subscribers_whole_and_overflows_only_the_stuck(
    overflow: str,
    stuck_gets: list[tuple[str | None, str]],
    dropped: int,
    metrics: InMemoryMetrics,
) -> None:
    """Lag counts only while a subscriber is away (its last chunk still being written):
    one that waits for its next frame takes a burst of 25 times `buffer`, published in
    one loop turn, in one write. One stuck in a write still gets its overflow mode."""
    hub = Broadcast(buffer=4, history=200, overflow=overflow, name="hub")  # type: ignore[arg-type]
    stuck = hub.subscribe("t", heartbeat=None)
    await next_chunk(stuck)  # and never asks for more: its write does not complete
    readers = [Collector(hub.subscribe("t", heartbeat=None)) for _ in range(3)]
    try:
        for reader in readers:
            await reader.started()
        await until_waiting(hub, 3)
        for n in range(100):
            await hub.publish("t", str(n))
        assert [r.chunks for r in readers] == [1, 1, 1], "the burst took one loop turn"
        for reader in readers:
            await reader.until(lambda r=reader: r.chunks >= 2)  # type: ignore[misc]
            assert [e.event for e in reader.events] == [None] * 100, "no overflow, no reset"
            assert reader.data() == [str(n) for n in range(100)]
            assert reader.chunks == 2, "the start, then the whole burst in one write"
        assert [(e.event, e.data) for e in events_of(await next_chunk(stuck))] == stuck_gets
        assert metrics.broadcast.get(("hub", "overflows"), 0) == (overflow == "disconnect")
        assert metrics.dropped.get(("broadcast", "hub"), 0) == dropped
    finally:
        for reader in readers:
            await reader.close()
        await stuck.aclose()  # type: ignore[attr-defined]


async def test_a_burst_on_several_topics_reaches_a_waiting_subscriber_whole() -> None:
    hub = Broadcast(buffer=4, history=200)
    reader = Collector(hub.subscribe(["a", "b"], heartbeat=None))
    try:
        await reader.started()
        await until_waiting(hub, 1)
        for n in range(50):
            await hub.publish("a", f"a{n}")
            await hub.publish("b", f"b{n}")
        await reader.until(lambda: reader.chunks >= 2)
        assert [e.event for e in reader.events] == [None] * 100, "no overflow, no reset"
        assert reader.data() == [f"a{n}" for n in range(50)] + [f"b{n}" for n in range(50)]
        assert reader.chunks == 2
    finally:
        await reader.close()


async def test_a_quiet_subscriber_gets_heartbeats() -> None:
    hub = Broadcast()
    body = hub.subscribe("t", heartbeat=0.01)
    await next_chunk(body)
    assert await next_chunk(body) == b": ping\n\n"
    await hub.publish("t", "x")
    assert [e.data for e in events_of(await next_chunk(body))] == ["x"]
    assert await next_chunk(body) == b": ping\n\n"
    await body.aclose()  # type: ignore[attr-defined]


async def test_idle_subscribers_share_one_heartbeat_timer() -> None:
    """Issue 13, idle memory: a timer per subscriber costs a `TimerHandle`, a context
    and a libuv timer each; their heartbeats share the loop's one timer instead."""
    hub = Broadcast()
    loop = asyncio.get_running_loop()
    timers_before = [t for t in loop._scheduled if not t.cancelled()]  # type: ignore[attr-defined]
    bodies = [hub.subscribe("t", heartbeat=0.05 + n / 1000) for n in range(100)]
    for body in bodies:
        await next_chunk(body)
    timers = [t for t in loop._scheduled if not t.cancelled()]  # type: ignore[attr-defined]
    assert len(timers) - len(timers_before) <= 1
    pings = await asyncio.gather(*(next_chunk(body) for body in bodies))
    assert pings == [b": ping\n\n"] * 100, "each still gets its heartbeat"
    for body in bodies:
        await body.aclose()  # type: ignore[attr-defined]


async def test_several_topics_resume_from_a_composite_id() -> None:
    hub = Broadcast()
    decoder = SSEDecoder()
    body = hub.subscribe(["a", "b"], heartbeat=None)
    events_of(await next_chunk(body), decoder)
    await hub.publish("a", "a1")
    await hub.publish("b", "b1")
    assert sorted(e.data or "" for e in events_of(await next_chunk(body), decoder)) == ["a1", "b1"]
    await body.aclose()  # type: ignore[attr-defined]
    assert decoder.last_event_id.count(",") == 1
    await hub.publish("b", "b2")
    await hub.publish("a", "a2")
    await hub.publish("b", "b3")
    body = hub.subscribe(["a", "b"], last_event_id=decoder.last_event_id, heartbeat=None)
    events = events_of(await next_chunk(body), decoder)
    assert [e.data for e in events] == ["a2", "b2", "b3"], "per topic, in publish order"
    await body.aclose()  # type: ignore[attr-defined]
    swapped = ",".join(reversed(decoder.last_event_id.split(",")))
    assert await resets_for(hub, "a", decoder.last_event_id) == ["reset"]
    body = hub.subscribe(["a", "b"], last_event_id=swapped, heartbeat=None)
    assert [e.event for e in events_of(await next_chunk(body))] == ["reset"]
    await body.aclose()  # type: ignore[attr-defined]


async def test_a_frame_to_several_topics_carries_one_id_line() -> None:
    """The composite id replaces the topic's own (two ``id:`` lines would work, the last
    one wins, but cost bytes on every event and read as a contradiction)."""
    hub = Broadcast()
    body = hub.subscribe(["a", "b"], heartbeat=None)
    first = await next_chunk(body)
    await hub.publish("a", "a1")
    live = await next_chunk(body)
    await body.aclose()  # type: ignore[attr-defined]
    last_id = SSEDecoder()
    last_id.feed(first + live)
    await hub.publish("b", "b1")
    body = hub.subscribe(["a", "b"], last_event_id=last_id.last_event_id, heartbeat=None)
    replay = await next_chunk(body)
    await body.aclose()  # type: ignore[attr-defined]
    for chunk in (live, replay):
        for frame in chunk.split(b"\n\n"):
            if b"data: " in frame:
                assert frame.count(b"id: ") == 1, frame


async def test_close_says_farewell_to_1000_subscribers_within_its_grace() -> None:
    hub = Broadcast()
    bodies = [hub.subscribe("t", heartbeat=None) for _ in range(1000)]
    for body in bodies:
        await next_chunk(body)
    farewells: list[ServerSentEvent] = []

    async def drain(body: AsyncIterator[bytes]) -> None:
        decoder = SSEDecoder()
        async for chunk in body:
            farewells.extend(e for e in decoder.feed(chunk) if e.event == "bye")

    readers = [asyncio.create_task(drain(body)) for body in bodies]
    await asyncio.sleep(0)
    farewell = ServerSentEvent("restarting", event="bye", retry=1000)
    await hub.close(farewell=farewell, grace=1.0)
    assert hub.subscribers == 0, "every subscriber ended within the grace"
    await asyncio.gather(*readers)
    assert len(farewells) == 1000
    retries = [e.retry for e in farewells]
    assert all(r is not None and 1000 <= r < 2000 for r in retries)
    assert len(set(retries)) > 100, "reconnections are spread out"


async def test_a_closed_hub_refuses_new_subscriptions_and_publishes() -> None:
    hub = Broadcast()
    await hub.close(grace=0)
    with pytest.raises(BroadcastError):
        hub.subscribe("t")
    body = hub.sse("t", retry=100).body
    chunks = [chunk async for chunk in body]
    assert b"".join(chunks).startswith(b"retry: 100\n\nretry: ")
    with pytest.raises(BroadcastError):
        await hub.publish("t", "x")
    with pytest.raises(ValueError):
        await hub.close(farewell=ServerSentEvent("x", id="1"))
    with pytest.raises(ValueError):
        await hub.close(grace=-1)


async def test_a_requested_shutdown_ends_every_subscriber_with_a_jittered_retry() -> None:
    async with Broadcast() as hub:
        body = hub.subscribe("t", heartbeat=None)
        await next_chunk(body)
        await hub.publish("t", "last")
        streamfx.request_shutdown()
        rest = [chunk async for chunk in body]
        decoder = SSEDecoder()
        assert [e.data for e in decoder.feed(b"".join(rest))] == ["last"]
        assert decoder.retry is not None and 1000 <= decoder.retry < 2000
        assert hub.closing
        with pytest.raises(BroadcastError):
            hub.subscribe("t")


async def test_topics_nobody_follows_are_forgotten_beyond_max_topics() -> None:
    hub = Broadcast(max_topics=3)
    followed = hub.subscribe("kept", heartbeat=None)
    await next_chunk(followed)
    first = await hub.publish("a", "x")
    for topic in "bcdef":
        await hub.publish(topic, "x")
    assert hub._backend.topics == 3  # type: ignore[attr-defined]
    assert await resets_for(hub, "a", first) == ["reset"], "its history is gone"
    await hub.publish("kept", "still here")
    assert [e.data for e in events_of(await next_chunk(followed))] == ["still here"]
    await followed.aclose()  # type: ignore[attr-defined]


async def test_metrics_count_subscribers_deliveries_and_the_hub_figures(
    metrics: InMemoryMetrics,
) -> None:
    hub = Broadcast(name="jobs")
    body = hub.subscribe("t", heartbeat=None)
    decoder = SSEDecoder()
    events_of(await next_chunk(body), decoder)
    assert metrics.active["broadcast", "jobs"] == 1
    await hub.publish("t", "1")
    await hub.publish("t", "2")
    events_of(await next_chunk(body), decoder)
    await body.aclose()  # type: ignore[attr-defined]
    await hub.publish("t", "3")
    again = hub.subscribe("t", last_event_id=decoder.last_event_id, heartbeat=None, name="x")
    await next_chunk(again)
    await again.aclose()  # type: ignore[attr-defined]
    await resets_for(hub, "t", "nope")
    assert metrics.active["broadcast", "jobs"] == 0
    assert metrics.opened["broadcast", "x"] == 1
    assert metrics.items["broadcast", "jobs"] == 2
    assert metrics.broadcast["jobs", "published"] == 3
    assert metrics.broadcast["jobs", "replayed"] == 1
    assert metrics.broadcast["jobs", "resets"] == 1


def registered_waiters(hub: Broadcast) -> int:
    logs: list[TopicLog] = list(hub._backend._logs.values())  # type: ignore[attr-defined]
    return sum(len(log.waiters) + log.subscribers for log in logs) + len(hub._followed)


async def test_10000_subscribe_unsubscribe_cycles_leave_nothing_behind() -> None:
    hub = Broadcast()
    await hub.publish("t", "warm up")

    async def cycle(n: int) -> None:
        body = hub.subscribe("t", heartbeat=15.0)
        await anext(body)
        if n % 2:  # half of them are cancelled while waiting, like a client leaving
            task = asyncio.ensure_future(anext(body))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await body.aclose()  # type: ignore[attr-defined]

    for n in range(200):  # warm up caches and free lists
        await cycle(n)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for n in range(10_000):
            await cycle(n)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # What streamfx's and asyncio's code allocated (the subscriptions' objects, their
    # futures and timers), not what another thread of the test process did meanwhile.
    ours = [tracemalloc.Filter(True, "*/streamfx/*"), tracemalloc.Filter(True, "*/asyncio/*")]
    diff = after.filter_traces(ours).compare_to(before.filter_traces(ours), "filename")
    grown = sum(stat.size_diff for stat in diff)
    assert grown < 64 * 1024, f"{grown} bytes left behind by 10,000 subscriptions: " + "; ".join(
        str(stat) for stat in diff[:5]
    )
    assert hub.subscribers == 0
    assert registered_waiters(hub) == 0
    loop_timers = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
    assert not [t for t in loop_timers if not t.cancelled()], "no heartbeat timer is left"


def test_importing_needs_no_redis() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import streamfx, streamfx.broadcast\n"
        "from streamfx.broadcast import RedisStreamsBackend\n"
        "backend = RedisStreamsBackend('redis://localhost')\n"
        "import asyncio\n"
        "try:\n"
        "    asyncio.run(backend.start())\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'streamfx[redis]'" in result.stdout


async def test_a_delivery_leaves_nothing_alive_into_the_next_wait() -> None:
    """Issue 13 (fan-out p99): what a waiting subscriber made per delivery (a future
    per wait, its ``await`` iterator) was alive whenever the garbage collector ran, got
    promoted to the oldest generation by the thousand and set off full collections.
    After a delivery, each subscriber waits again holding only what asyncio itself
    makes for any task waiting inside an ``async for``: the ``anext`` awaitable and
    the task's wake-up method."""
    hub = Broadcast()
    n = 200
    chunks = [0] * n

    async def read(index: int) -> None:
        async for _ in hub.subscribe("t", heartbeat=15.0):
            chunks[index] += 1

    async def delivered(count: int) -> None:
        async with asyncio.timeout(5):
            while min(chunks) < count:  # noqa: ASYNC110
                await asyncio.sleep(0)
        await until_waiting(hub, n)

    readers = [asyncio.create_task(read(index)) for index in range(n)]
    try:
        await delivered(1)  # the start
        await hub.publish("t", "warm up")  # free lists and caches as in a running server
        await delivered(2)
        gc.collect()
        gc.disable()
        # What is alive now, held (so that no id is reused) and left out below. Not
        # gc.freeze(): its unfreeze would hand the collector every object the suite's
        # conftest froze, and this test would be blamed for their finalizers.
        before = gc.get_objects()
        known = {id(thing) for thing in before}
        try:
            await hub.publish("t", "x")
            await delivered(3)
            made = Counter(
                type(thing).__name__ for thing in gc.get_objects() if id(thing) not in known
            )
        finally:
            del before
            gc.enable()
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    per_subscriber = {name for name, count in made.items() if count >= n // 2}
    assert per_subscriber <= {"async_generator_asend", "builtin_function_or_method"}, made
