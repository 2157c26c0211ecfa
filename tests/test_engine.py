"""encode_batches: the body engine under sse() and export(), driven directly (no server).

Timing is made deterministic with sources that wait on events the test controls.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import AsyncGenerator, AsyncIterator, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamfx
from streamfx import BufferPolicy, Strategy
from streamfx._core import shutdown
from streamfx._core.channel import LIST_CAPACITY
from streamfx._response.engine import encode_batches
from streamfx.metrics import InMemoryMetrics
from tests._sources import burst


def lines(batch: list[int]) -> bytes:
    return b"".join(b"%d\n" % item for item in batch)


def numbers(chunks: list[bytes]) -> list[int]:
    return [int(line) for line in b"".join(chunks).split()]


# -- drops happen only when the consumer is not ready (defect 1) -----------------------


async def test_sse_default_buffer_delivers_a_burst_to_a_ready_client() -> None:
    count = 10_000
    chunks = [chunk async for chunk in streamfx.sse(burst(count), heartbeat=None).body]
    events = streamfx.SSEDecoder().feed(b"".join(chunks))
    assert [event.data for event in events] == [str(index) for index in range(count)]


@pytest.mark.parametrize("strategy", ["sliding", "dropping"])
async def test_a_lossy_engine_drops_nothing_for_a_ready_consumer(strategy: Strategy) -> None:
    metrics = InMemoryMetrics()
    body = encode_batches(
        burst(10_000), BufferPolicy(64, strategy), lines, kind="test", metrics=metrics
    )
    assert numbers([chunk async for chunk in body]) == list(range(10_000))
    assert metrics.dropped["test", ""] == 0


@pytest.mark.parametrize(
    ("strategy", "kept"),
    [("sliding", [0, *range(97, 100)]), ("dropping", [0, 1, 2, 3])],
)
async def test_a_lossy_engine_drops_while_the_client_is_away(
    strategy: Strategy, kept: list[int]
) -> None:
    """The consumer is 'away' while the adapter awaits a write: here, while the test
    holds the body suspended after its first chunk and the source produces 1..99."""
    metrics = InMemoryMetrics()
    dropped: list[int] = []
    go, produced = asyncio.Event(), asyncio.Event()

    async def source() -> AsyncIterator[int]:
        yield 0
        await go.wait()
        for index in range(1, 100):
            yield index
        produced.set()

    body = encode_batches(
        source(),
        BufferPolicy(3, strategy),
        lines,
        kind="test",
        metrics=metrics,
        on_drop=dropped.append,
    )
    first = await anext(body)
    go.set()
    await produced.wait()  # the body is suspended in its yield: the client is away
    received = numbers([first, *[chunk async for chunk in body]])
    assert received == kept
    assert sorted(received + dropped) == list(range(100))
    assert metrics.dropped["test", ""] == len(dropped)


@pytest.mark.parametrize("capacity", [LIST_CAPACITY, LIST_CAPACITY + 1])
@pytest.mark.parametrize("strategy", ["sliding", "dropping"])
async def test_drops_follow_the_rule_whichever_container_holds_the_items(
    capacity: int, strategy: Strategy
) -> None:
    """A channel keeps its items in a list up to `LIST_CAPACITY` and in a deque above:
    the same items are kept and dropped either way."""
    count = 3 * capacity
    dropped: list[int] = []
    go, produced = asyncio.Event(), asyncio.Event()

    async def source() -> AsyncIterator[int]:
        yield 0
        await go.wait()
        for index in range(1, count):
            yield index
        produced.set()

    body = encode_batches(
        source(), BufferPolicy(capacity, strategy), lines, kind="test", on_drop=dropped.append
    )
    first = await anext(body)
    go.set()
    await produced.wait()
    received = numbers([first, *[chunk async for chunk in body]])
    if strategy == "sliding":
        assert received == [0, *range(count - capacity, count)]
    else:
        assert received == list(range(capacity + 1))
    assert sorted(received + dropped) == list(range(count))


capacities = st.integers(min_value=1, max_value=8)
lossy = st.sampled_from(["sliding", "dropping"])
pause_sets = st.sets(st.integers(min_value=0, max_value=300), max_size=20)


@settings(max_examples=100, deadline=None)
@given(
    capacity=capacities,
    strategy=lossy,
    count=st.integers(min_value=0, max_value=300),
    pauses=pause_sets,
)
def test_property_a_ready_client_never_loses_an_item(
    capacity: int, strategy: Strategy, count: int, pauses: set[int]
) -> None:
    async def run() -> tuple[list[int], InMemoryMetrics]:
        metrics = InMemoryMetrics()
        source = burst(count, pauses=pauses)
        policy = BufferPolicy(capacity, strategy)
        body = encode_batches(source, policy, lines, kind="test", metrics=metrics)
        return numbers([chunk async for chunk in body]), metrics

    received, metrics = asyncio.run(run())
    assert received == list(range(count))
    assert metrics.dropped["test", ""] == 0


@settings(max_examples=100, deadline=None)
@given(
    capacity=capacities,
    strategy=lossy,
    count=st.integers(min_value=1, max_value=200),
    pauses=pause_sets,
)
def test_property_a_stalled_client_loses_only_what_did_not_fit(
    capacity: int, strategy: Strategy, count: int, pauses: set[int]
) -> None:
    """The client takes one chunk, then stops reading until the source has ended."""

    async def run() -> tuple[list[int], list[int], int]:
        metrics = InMemoryMetrics()
        dropped: list[int] = []
        finished = asyncio.Event()
        body = encode_batches(
            burst(count, pauses=pauses, finished=finished),
            BufferPolicy(capacity, strategy),
            lines,
            kind="test",
            metrics=metrics,
            on_drop=dropped.append,
        )
        first = await anext(body)
        await asyncio.wait_for(finished.wait(), 5)
        received = numbers([first, *[chunk async for chunk in body]])
        return received, dropped, metrics.dropped["test", ""]

    received, dropped, reported = asyncio.run(run())
    assert received == sorted(received), "order is kept"
    assert sorted(received + dropped) == list(range(count)), "received + dropped = produced"
    assert reported == len(dropped), "each drop is reported once"


# -- memory: a suspend batch counts until its chunk is handed on ------------------------


async def test_a_partial_batch_counts_against_the_capacity_until_sent() -> None:
    """The source is busy (not waiting for room) when the body takes a batch of one:
    while that chunk is out, the source may fill only the rest of the capacity."""
    pulled: list[int] = []
    gate = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        index = 0
        while True:
            pulled.append(index)
            yield index
            if index == 0:
                await gate.wait()
            index += 1

    body = encode_batches(source(), BufferPolicy(4, "suspend"), lines, kind="test")
    assert await anext(body) == b"0\n"  # the body is now suspended in its yield
    gate.set()
    for _ in range(50):  # give the source every chance to run ahead
        await asyncio.sleep(0)
    assert pulled == [0, 1, 2, 3], "1 item in the chunk + 3 waiting = the capacity"
    assert await anext(body) == b"1\n2\n3\n"
    await body.aclose()


# -- keep-alive: one timer rule with heartbeat() -----------------------------------------


async def test_keepalive_follows_the_heartbeat_rule() -> None:
    """The same scripted source through heartbeat() and through the engine gives the
    same sequence of items and beats."""

    def scripted() -> tuple[AsyncIterator[int], asyncio.Event]:
        resume = asyncio.Event()

        async def source() -> AsyncIterator[int]:
            yield 1
            await resume.wait()
            yield 2

        return source(), resume

    source, resume = scripted()
    from_heartbeat: list[object] = []
    async for item in streamfx.heartbeat(source, 0.01, "beat"):
        from_heartbeat.append(item)
        if from_heartbeat.count("beat") == 2:
            resume.set()

    source, resume = scripted()
    from_engine: list[object] = []
    body = encode_batches(source, BufferPolicy(4), lines, kind="test", keepalive=0.01, beat=b"-")
    async for chunk in body:
        from_engine.append("beat" if chunk == b"-" else int(chunk))
        if from_engine.count("beat") == 2:
            resume.set()

    assert from_heartbeat == from_engine == [1, "beat", "beat", 2]


# -- drainable: a shutdown ends only streams that say so ---------------------------------


@pytest.fixture
def clean_shutdown_flag() -> Iterator[None]:
    streamfx.reset_shutdown()
    yield
    streamfx.reset_shutdown()


@pytest.mark.usefixtures("clean_shutdown_flag")
@pytest.mark.parametrize(("farewell", "tail"), [(b"", b""), (b"bye\n", b"bye\n")])
async def test_a_drainable_stream_sends_what_it_holds_then_its_farewell(
    farewell: bytes, tail: bytes
) -> None:
    never = asyncio.Event()
    cleaned: list[bool] = []
    metrics = InMemoryMetrics()

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
            await never.wait()
            yield 3
        finally:
            cleaned.append(True)

    body = encode_batches(
        source(),
        BufferPolicy(8),
        lines,
        kind="test",
        metrics=metrics,
        drainable=True,
        farewell=farewell,
    )
    chunks = [await anext(body)]
    streamfx.request_shutdown()
    chunks += [chunk async for chunk in body]
    assert b"".join(chunks) == b"1\n2\n" + tail
    assert cleaned == [True]
    assert metrics.outcomes["test", "", "completed"] == 1


@pytest.mark.usefixtures("clean_shutdown_flag")
async def test_a_stream_that_is_not_drainable_ignores_a_shutdown() -> None:
    gate = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        yield 1
        await gate.wait()
        yield 2

    body = encode_batches(source(), BufferPolicy(8), lines, kind="test", farewell=b"bye\n")
    first = await anext(body)
    streamfx.request_shutdown()
    gate.set()
    assert b"".join([first, *[chunk async for chunk in body]]) == b"1\n2\n"


# -- metrics, errors and closing ---------------------------------------------------------


async def test_the_error_comes_after_the_chunks_before_it_and_is_counted_once() -> None:
    metrics = InMemoryMetrics()

    async def failing() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(0)
        yield 2
        await asyncio.sleep(0)
        raise RuntimeError("source failed")

    body = encode_batches(failing(), BufferPolicy(1), lines, kind="test", metrics=metrics)
    received: list[bytes] = []
    with pytest.raises(RuntimeError, match="source failed"):
        async for chunk in body:
            received.append(chunk)
    assert b"".join(received) == b"1\n2\n"
    assert metrics.outcomes == {("test", "", "error"): 1}
    assert metrics.items["test", ""] == 2
    assert metrics.opened["test", ""] == 1
    assert metrics.active["test", ""] == 0


async def test_closing_the_body_cancels_the_source_and_waits_for_its_cleanup() -> None:
    metrics = InMemoryMetrics()
    cleaned: list[bool] = []

    async def endless() -> AsyncIterator[int]:
        try:
            index = 0
            while True:
                await asyncio.sleep(0)
                yield index
                index += 1
        finally:
            await asyncio.sleep(0)
            cleaned.append(True)

    body = encode_batches(endless(), BufferPolicy(4), lines, kind="test", metrics=metrics)
    await anext(body)
    await body.aclose()
    assert cleaned == [True]
    assert metrics.outcomes == {("test", "", "closed"): 1}


async def test_prefix_first_and_finish_last() -> None:
    body = encode_batches(
        burst(3), BufferPolicy(8), lines, kind="test", prefix=b"[", finish=lambda: b"]"
    )
    chunks = [chunk async for chunk in body]
    assert chunks[0] == b"["
    assert chunks[-1] == b"]"
    assert b"".join(chunks) == b"[0\n1\n2\n]"


async def test_a_written_chunk_is_not_held_while_the_stream_waits() -> None:
    """Idle memory: a stream that went quiet after a large batch kept that batch's
    chunk alive in its body until the next one (per connection)."""

    async def one_then_silence() -> AsyncIterator[int]:
        yield 7
        await asyncio.get_running_loop().create_future()

    body = encode_batches(one_then_silence(), BufferPolicy(4), lines, kind="t")
    chunk = await anext(body)
    assert numbers([chunk]) == [7]
    held = sys.getrefcount(chunk)
    waiting = asyncio.ensure_future(anext(body))
    for _ in range(10):  # a few loop turns: the body goes back to waiting for items
        await asyncio.sleep(0)
        if sys.getrefcount(chunk) < held:
            break
    assert sys.getrefcount(chunk) < held, "the body let go of the chunk it wrote"
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await body.aclose()


async def _idle(body: AsyncIterator[bytes]) -> asyncio.Future[bytes]:
    """The body's next chunk, awaited in a task until the body waits for items."""
    waiting = asyncio.ensure_future(anext(body))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    return waiting


async def _closed(body: AsyncGenerator[bytes, None], waiting: asyncio.Future[bytes]) -> None:
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await body.aclose()


async def test_an_idle_body_holds_no_empty_batch() -> None:
    """Issue 15, idle memory: a body waiting for items held the empty list its last
    look at the buffer returned (a list per idle stream)."""

    async def silence() -> AsyncIterator[int]:
        await asyncio.get_running_loop().create_future()
        yield 0  # pragma: no cover - never reached

    body = encode_batches(silence(), BufferPolicy(4), lines, kind="t", prefix=b":\n")
    assert await anext(body) == b":\n"
    waiting = await _idle(body)
    assert isinstance(body, types.AsyncGeneratorType)
    assert body.ag_frame is not None
    assert "batch" not in body.ag_frame.f_locals
    await _closed(body, waiting)


@pytest.mark.usefixtures("clean_shutdown_flag")
async def test_an_idle_drainable_body_with_a_heartbeat_listens_without_a_bound_method() -> None:
    """Issue 15, idle memory: a drainable body listened for a shutdown with a bound
    method of its channel (one object per idle stream, held by the listeners); with a
    keep-alive its silence, which it holds anyway, is the listener. A shutdown still
    ends it at once, with its farewell."""

    async def silence() -> AsyncIterator[int]:
        await asyncio.get_running_loop().create_future()
        yield 0  # pragma: no cover - never reached

    before = set(shutdown._listeners)
    body = encode_batches(
        silence(),
        BufferPolicy(4),
        lines,
        kind="t",
        prefix=b":\n",
        keepalive=60,
        drainable=True,
        farewell=b"bye\n",
    )
    assert await anext(body) == b":\n"
    waiting = await _idle(body)
    added = [listener for listener in shutdown._listeners if listener not in before]
    assert len(added) == 1
    assert not isinstance(added[0], types.MethodType)
    streamfx.request_shutdown()
    assert await waiting == b"bye\n"
    assert [chunk async for chunk in body] == []
    assert not [listener for listener in shutdown._listeners if listener not in before]
