"""Property test: a hub against a model, in process and on a real Redis.

A schedule interleaves publishes to two topics (one at a time, or a burst of several
in one loop turn), subscriptions (to one topic or both), reads, waits, disconnects and
reconnects with any ``Last-Event-ID`` (the client's own, a malformed one, one too long,
one from another topic, none). A subscriber is in one of two positions: *away*, its
last chunk taken but the next not asked for (a client still writing), or *waiting*,
its next chunk asked for while nothing was due (a ready client). The model says what
every read must decode to:

- each subscriber sees its topics' events in order, with no duplicate;
- after a reconnect it misses none while the history covers its gap, and gets exactly
  one ``reset`` (then the live stream) otherwise;
- an away subscriber more than `buffer` events behind at a read gets what its overflow
  mode says (``overflow`` and the end; one ``reset`` and the newest `buffer`; the newest
  one);
- a waiting subscriber is never behind: a publish or a burst of any size reaches it
  whole, in one chunk, unless the burst pushed its frames out of the log (in process,
  more than `history` events), and then it gets its overflow mode the same way;
- the overflow, reset, skipped and replayed counts in the metrics are exact.

In process the history is the hub's `history`. On Redis the hub keeps a long log in
process and the stream keeps `stream_history` entries, trimmed exactly (the test
server stores one entry per stream node, so ``MAXLEN ~`` trims to the entry); an id is
honoured there while its entry is still in the stream or in this process's log. After
each publish the test waits until the process's reader has fed the event into the
logs that follow its topic, so the lag at each read is what the model says. A burst on
Redis is one ``MULTI`` of ``XADD``s written by a client of the test's own (as another
process's publishes would arrive), so that the reader gets it in one ``XREAD`` reply;
a burst longer than the stream's history is trimmed before the reader reads it, and
each subscriber here that follows the topic gets exactly one ``reset`` (reason
``lost``) in its log's place of the lost events, then the events left.
After every publish or burst the test takes the chunk each waiting subscriber of that
topic was woken for, so a waiting subscriber sees exactly one step's events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio
from hypothesis import event as note_event
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfx import SSEDecoder
from streamfx.broadcast import Broadcast, RedisStreamsBackend
from streamfx.broadcast._frames import encode_body
from streamfx.broadcast._redis_store import FIELD
from streamfx.broadcast._waiter import Waiter
from streamfx.broadcast.redis_streams import parse_id
from streamfx.metrics import InMemoryMetrics, set_metrics
from tests._broadcast_reader import until_waiting
from tests._redis import RedisServer, exact_redis

__all__ = ["exact_redis"]  # fixtures

TOPICS = ("a", "b")
SUBSCRIPTIONS = (("a",), ("b",), ("a", "b"))
LOCAL_LOG = 500  # the in-process log on Redis: longer than any schedule (50 x 8 events)
READERS = 3
LARGEST_BURST = 8  # more than any in-process history (buffer + extra <= 7)

Op = tuple[Any, ...]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.sampled_from(TOPICS)),
        st.tuples(st.just("publish"), st.sampled_from(TOPICS)),
        st.tuples(st.just("burst"), st.sampled_from(TOPICS), st.integers(2, LARGEST_BURST)),
        st.tuples(st.just("wait"), st.integers(0, READERS - 1)),
        st.tuples(st.just("wait"), st.integers(0, READERS - 1)),
        st.tuples(st.just("subscribe"), st.integers(0, READERS - 1), st.integers(0, 2)),
        st.tuples(st.just("subscribe"), st.integers(0, READERS - 1), st.integers(0, 2)),
        st.tuples(st.just("read"), st.integers(0, READERS - 1)),
        st.tuples(st.just("read"), st.integers(0, READERS - 1)),
        st.tuples(st.just("drop"), st.integers(0, READERS - 1)),
        st.tuples(
            st.just("resume"),
            st.integers(0, READERS - 1),
            st.sampled_from(["last", "last", "garbage", "too_long", "other", "none"]),
        ),
    ),
    min_size=10,
    max_size=50,
)


@dataclass
class Reader:
    """One client: its subscription, the body it reads, what it decoded."""

    topics: tuple[str, ...]
    positions: dict[str, int]
    body: AsyncIterator[bytes] | None = None
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    waiting: asyncio.Task[bytes] | None = None
    """Set while it waits: its next chunk, asked for when nothing was due."""


@dataclass
class Model:
    buffer: int
    overflow: str
    history: int  # in process: the hub's history; on Redis: the stream's
    redis: bool
    events: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t in TOPICS})
    local_base: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(TOPICS))
    lost: dict[str, set[int]] = field(default_factory=lambda: {t: set() for t in TOPICS})
    """On Redis: the events (indexes) trimmed before the reader read them."""
    gaps: dict[str, set[int]] = field(default_factory=lambda: {t: set() for t in TOPICS})
    """On Redis: the events (indexes) that a ``reset`` (reason ``lost``) precedes."""
    resets: int = 0
    overflows: int = 0
    skipped: int = 0
    replayed: int = 0

    def head(self, topic: str) -> int:
        return len(self.events[topic])

    def covered(self, topic: str, position: int) -> bool:
        head = self.head(topic)
        if not self.redis:
            return head - position <= self.history
        base = self.local_base[topic]
        if base is not None and position >= base:
            return True
        if position == 0:
            return head <= self.history
        return head - position < self.history

    def start(self, reader: Reader, wanted: dict[str, int] | None) -> list[tuple[str | None, str]]:
        """What a subscription starting at `wanted` (None: fresh or bad id) decodes to;
        `reader.positions` move to the heads."""
        expected: list[tuple[str | None, str]] = []
        if wanted is not None:
            if all(self.covered(t, wanted[t]) for t in reader.topics):
                for topic in reader.topics:
                    replay = self.events[topic][wanted[topic] :]
                    self.replayed += len(replay)
                    expected.extend((None, data) for data in replay)
            else:
                expected.append(("reset", "?"))
                self.resets += 1
        for topic in reader.topics:
            reader.positions[topic] = self.head(topic)
        return expected

    def trimmed_burst(self, topic: str, count: int, attached: int) -> None:
        """On Redis: `count` (more than the stream's history) events just added in one
        transaction to a topic that `attached` subscribers here follow: the oldest were
        trimmed before the reader read them, so each of those subscribers' logs gets
        one ``reset`` before the events left; an id is honoured from those on."""
        head = self.head(topic)
        first_kept = head - self.history
        self.lost[topic].update(range(head - count, first_kept))
        self.gaps[topic].add(first_kept)
        self.resets += attached
        self.local_base[topic] = first_kept + 1

    def frames(self, topic: str, position: int) -> list[tuple[str | None, str]]:
        """What the topic's log holds after `position`, as decoded events."""
        lost, gaps = self.lost[topic], self.gaps[topic]
        frames: list[tuple[str | None, str]] = []
        for index in range(position, self.head(topic)):
            if index in gaps:
                frames.append(("reset", "?"))
            if index not in lost:
                frames.append((None, self.events[topic][index]))
        return frames

    def due(self, reader: Reader) -> bool:
        """Whether a read would return at once (else it waits)."""
        return any(self.head(t) > reader.positions[t] for t in reader.topics)

    def read(self, reader: Reader, away: bool = True) -> list[tuple[str | None, str]] | None:
        """What one read decodes to; None when nothing is due (the read would wait).

        `away`: the reader comes back from a write, so it may lag `buffer` events; else
        it was waiting, and only frames gone from the log (the hub's `history` in
        process, the long local log on Redis) count against it."""
        if not self.due(reader):
            return None
        due = {t: self.frames(t, reader.positions[t]) for t in reader.topics}
        behind = {t: len(frames) for t, frames in due.items()}
        bound = self.buffer if away else LOCAL_LOG if self.redis else self.history
        over = [t for t in reader.topics if behind[t] > bound]
        if over and self.overflow == "disconnect":
            self.overflows += 1
            return [("overflow", "behind")]
        expected: list[tuple[str | None, str]] = []
        if over and self.overflow == "sliding":
            expected.append(("reset", "skipped"))
            self.resets += 1
        keep = self.buffer if self.overflow == "sliding" else 1
        for topic in reader.topics:
            frames = due[topic]
            if topic in over:
                self.skipped += behind[topic] - keep
                frames = frames[-keep:]
            expected.extend(frames)
            reader.positions[topic] = self.head(topic)
        return expected


def describe(expected: list[tuple[str | None, str]] | None, buffer: int) -> str:
    """What a read got, for hypothesis' statistics (``--hypothesis-show-statistics``)."""
    if not expected:
        return "nothing"
    if expected[0][0] is not None:
        return f"{expected[0][0]} first"
    return "more than buffer" if len(expected) > buffer else "within buffer"


def decoded(decoder: SSEDecoder, chunk: bytes) -> list[tuple[str | None, str]]:
    events = []
    for event in decoder.feed(chunk):
        assert event.data is not None
        data = event.data if event.event != "reset" or event.data == "skipped" else "?"
        events.append((event.event, data))
    return events


def by_topic(events: list[tuple[str | None, str]]) -> list[tuple[str | None, str]]:
    """`events` topic by topic, each topic's in the order received, a ``reset`` first.

    The start of a subscriber to several topics promises each topic's replay in publish
    order, not one order across topics: a topic replayed from Redis comes before one
    replayed from its log in memory (found on Redis: ``b1`` then ``a5``...)."""
    return sorted(events, key=lambda event: "" if event[0] == "reset" else event[1][:1])


async def next_chunk(body: AsyncIterator[bytes]) -> bytes:
    return await anext(body)


async def take_start(body: AsyncIterator[bytes]) -> bytes:
    """The chunks up to and including the one that ends the start (an id-only frame)."""
    received = b""
    async with asyncio.timeout(10):
        while b"id: " not in received:
            received += await anext(body)
    return received


class Harness:
    def __init__(
        self, hub: Broadcast, model: Model, redis_client: redis.asyncio.Redis | None = None
    ) -> None:
        self.hub = hub
        self.model = model
        self.redis_client = redis_client
        self.readers: dict[int, Reader] = {}
        self.last_ids: dict[str, str] = {}

    def attached(self, topic: str) -> int:
        return sum(1 for r in self.readers.values() if r.body is not None and topic in r.topics)

    async def publish(self, topic: str) -> None:
        number = self.model.head(topic) + 1
        event_id = await self.hub.publish(topic, f"{topic}{number}")
        self.model.events[topic].append(f"{topic}{number}")
        self.last_ids[topic] = event_id
        if self.model.redis:
            await caught_up(self.hub, topic, event_id)
        await self.check_woken(topic)

    async def burst(self, topic: str, count: int) -> None:
        """`count` events in one loop turn (on Redis: one transaction, one XREAD reply).

        On Redis a transaction longer than the stream's history trims entries before the
        reader reads them: the subscribers here that follow `topic` get one ``reset``
        (reason ``lost``) and then the events left (`Model.trimmed_burst`)."""
        first = self.model.head(topic) + 1
        items = [f"{topic}{number}" for number in range(first, first + count)]
        if self.redis_client is None:
            for item in items:  # an in-process publish never suspends
                self.last_ids[topic] = await self.hub.publish(topic, item)
        else:
            backend: Any = self.hub._backend
            async with self.redis_client.pipeline(transaction=True) as pipe:
                for item in items:  # the bytes and the trimming of hub.publish
                    body = encode_body(item, None, None)
                    pipe.xadd(backend.prefix + topic, {FIELD: body}, maxlen=backend.history)
                entry_ids = await pipe.execute()
            self.last_ids[topic] = entry_ids[-1].decode()
            await caught_up(self.hub, topic, self.last_ids[topic])
        self.model.events[topic].extend(items)
        attached = self.attached(topic)
        if self.model.redis and attached and count > self.model.history:
            self.model.trimmed_burst(topic, count, attached)
        await self.check_woken(topic)

    async def wait(self, reader: Reader) -> None:
        """The reader asks for its next chunk; when something is due that is a read,
        else it waits (until a publish to one of its topics wakes it)."""
        if self.model.due(reader):
            await self.check_read(reader)
            if reader.body is None:
                return
        assert reader.body is not None
        reader.waiting = asyncio.create_task(next_chunk(reader.body))
        waiting = sum(1 for r in self.readers.values() if r.waiting is not None)
        await until_waiting(self.hub, waiting)

    async def check_woken(self, topic: str) -> None:
        """The chunk each waiting reader of `topic` was woken for: all it missed."""
        for reader in self.readers.values():
            if reader.waiting is not None and topic in reader.topics:
                task, reader.waiting = reader.waiting, None
                async with asyncio.timeout(10):
                    chunk = await task
                expected = self.model.read(reader, away=False)
                note_event(f"woken: {describe(expected, self.model.buffer)}")
                await self.check_chunk(reader, chunk, expected)

    async def subscribe(self, index: int, topics: tuple[str, ...], last_id: str | None) -> Reader:
        reader = Reader(topics, dict.fromkeys(topics, 0))
        for topic in topics:
            if self.model.redis and self.attached(topic) == 0:
                self.model.local_base[topic] = self.model.head(topic)
        reader.body = self.hub.subscribe(topics, last_event_id=last_id, heartbeat=None)
        self.readers[index] = reader
        return reader

    async def drop(self, reader: Reader) -> None:
        assert reader.body is not None
        if reader.waiting is not None:
            reader.waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader.waiting
            reader.waiting = None
        await reader.body.aclose()  # type: ignore[attr-defined]
        reader.body = None
        for topic in reader.topics:
            if self.attached(topic) == 0:
                self.model.local_base[topic] = None

    async def run(self, steps: list[Op]) -> None:
        for step in steps:
            kind = step[0]
            reader = self.readers.get(step[1]) if kind != "publish" else None
            if kind == "publish":
                await self.publish(step[1])
            elif kind == "burst":
                await self.burst(step[1], step[2])
            elif kind == "wait":
                if reader is None or reader.body is None or reader.waiting is not None:
                    continue
                await self.wait(reader)
            elif kind == "subscribe":
                if reader is not None and reader.body is not None:
                    continue
                reader = await self.subscribe(step[1], SUBSCRIPTIONS[step[2]], None)
                await self.check_start(reader, None)
            elif kind == "read":
                if reader is None or reader.body is None or reader.waiting is not None:
                    continue  # a waiting reader's read is already asked for
                await self.check_read(reader)
            elif kind == "drop":
                if reader is None or reader.body is None:
                    continue
                await self.drop(reader)
            else:
                if reader is None or reader.body is not None:
                    continue
                await self.resume(step[1], reader, step[2])
        for reader in self.readers.values():
            if reader.body is not None:
                await self.drop(reader)
        assert self.hub.subscribers == 0

    async def resume(self, index: int, old: Reader, how: str) -> None:
        never = {t: -1 for t in old.topics}  # a position no history covers: a reset
        wanted: dict[str, int] | None
        if how == "last":
            last_id: str | None = old.decoder.last_event_id
            wanted = dict(old.positions)
        elif how == "garbage":
            last_id, wanted = "no-such-id", never
        elif how == "too_long":
            last_id, wanted = "9" * 500, never
        elif how == "other" and not self.model.redis and len(old.topics) == 1:
            other = "b" if old.topics == ("a",) else "a"
            last_id, wanted = self.last_ids.get(other, "x-1"), never
        else:
            last_id, wanted = None, None
        reader = await self.subscribe(index, old.topics, last_id)
        await self.check_start(reader, wanted)

    async def check_start(self, reader: Reader, wanted: dict[str, int] | None) -> None:
        if wanted is not None and any(p < 0 for p in wanted.values()):
            expected: list[tuple[str | None, str]] = [("reset", "?")]
            self.model.resets += 1
            for topic in reader.topics:
                reader.positions[topic] = self.model.head(topic)
        else:
            expected = self.model.start(reader, wanted)
        assert reader.body is not None
        got = decoded(reader.decoder, await take_start(reader.body))
        assert by_topic(got) == by_topic(expected)
        self.check_position(reader)

    async def check_read(self, reader: Reader) -> None:
        expected = self.model.read(reader)
        if expected is None:
            return
        assert reader.body is not None
        async with asyncio.timeout(10):
            chunk = await anext(reader.body)
        note_event(f"away: {describe(expected, self.model.buffer)}")
        await self.check_chunk(reader, chunk, expected)

    async def check_chunk(
        self, reader: Reader, chunk: bytes, expected: list[tuple[str | None, str]] | None
    ) -> None:
        """One chunk against the model's `expected` (which moved the reader's positions)."""
        assert expected is not None, "a chunk came when the model had nothing due"
        assert reader.body is not None
        got = decoded(reader.decoder, chunk)
        assert got == expected
        if expected == [("overflow", "behind")]:
            with pytest.raises(StopAsyncIteration):
                await anext(reader.body)
            reader.body = None
            for topic in reader.topics:
                if self.attached(topic) == 0:
                    self.model.local_base[topic] = None
        else:
            self.check_position(reader)

    def check_position(self, reader: Reader) -> None:
        """A single-topic reader's last event id names the head it is at."""
        if len(reader.topics) == 1:
            topic = reader.topics[0]
            head = self.model.head(topic)
            if head and reader.positions[topic] == head:
                assert reader.decoder.last_event_id == self.last_ids[topic]


async def caught_up(hub: Broadcast, topic: str, event_id: str) -> None:
    """Wait until every log of `topic` in this process holds `event_id`."""
    backend: Any = hub._backend
    wanted = parse_id(event_id)
    assert wanted is not None
    async with asyncio.timeout(10):
        while True:
            log = backend._logs.get(topic)
            if log is None or not log.ready:
                return
            head = parse_id(log.id_of(log.head))
            if head is not None and head >= wanted:
                return
            waiter = Waiter(asyncio.get_running_loop()).arm()
            log.waiters.add(waiter)
            try:
                await waiter
            finally:
                waiter.disarm()
                log.waiters.discard(waiter)


def check_figures(metrics: InMemoryMetrics, model: Model) -> None:
    assert metrics.broadcast["", "resets"] == model.resets
    assert metrics.broadcast["", "overflows"] == model.overflows
    assert metrics.broadcast["", "replayed"] == model.replayed
    assert metrics.total("dropped") == model.skipped
    assert metrics.total("active") == 0


async def run_in_process(buffer: int, extra: int, overflow: str, steps: list[Op]) -> None:
    model = Model(buffer, overflow, buffer + extra, redis=False)
    metrics = InMemoryMetrics()
    previous = set_metrics(metrics)
    try:
        hub = Broadcast(buffer=buffer, history=buffer + extra, overflow=overflow)  # type: ignore[arg-type]
        async with hub:
            await Harness(hub, model).run(steps)
    finally:
        set_metrics(previous)
    check_figures(metrics, model)


@settings(max_examples=300, deadline=None)
@given(
    buffer=st.integers(1, 4),
    extra=st.integers(0, 3),
    overflow=st.sampled_from(["disconnect", "sliding", "latest"]),
    steps=operations,
)
def test_in_process_hub_matches_the_model(
    buffer: int, extra: int, overflow: str, steps: list[Op]
) -> None:
    asyncio.run(run_in_process(buffer, extra, overflow, steps))


async def run_on_redis(
    url: str, prefix: str, buffer: int, kept: int, overflow: str, steps: list[Op]
) -> None:
    model = Model(buffer, overflow, kept, redis=True)
    metrics = InMemoryMetrics()
    previous = set_metrics(metrics)
    try:
        backend = RedisStreamsBackend(url, prefix=prefix, history=kept)
        hub = Broadcast(backend=backend, buffer=buffer, history=LOCAL_LOG, overflow=overflow)  # type: ignore[arg-type]
        client = redis.asyncio.Redis.from_url(url)
        try:
            async with hub:
                await Harness(hub, model, client).run(steps)
        finally:
            await client.aclose()
    finally:
        set_metrics(previous)
    check_figures(metrics, model)


def test_redis_hub_matches_the_model(exact_redis: RedisServer) -> None:
    examples = iter(range(10**9))

    @settings(max_examples=300, deadline=None)
    @given(
        buffer=st.integers(1, 4),
        kept=st.integers(1, 6),
        overflow=st.sampled_from(["disconnect", "sliding", "latest"]),
        steps=operations,
    )
    def check(buffer: int, kept: int, overflow: str, steps: list[Op]) -> None:
        prefix = f"model-{next(examples)}:"
        asyncio.run(run_on_redis(exact_redis.url, prefix, buffer, kept, overflow, steps))

    check()
