"""Property tests: `buffer` against a model of what must come out for a given
producer/consumer schedule.

A schedule is a list of steps. ``"p"`` lets the source produce one more item;
``"c"`` makes the consumer take one item if the model says one is waiting. After each
step the event loop runs until everything settles. The model is a plain deque with
the strategy's rule; in ``"suspend"`` mode the source is not even asked for an item
while the buffer is full, so permits to produce pile up instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

import streamfx
from tests._sources import burst


@dataclass
class Model:
    capacity: int
    strategy: str
    buffered: deque[int] = field(default_factory=deque)
    permits: int = 0
    next_item: int = 1  # item 0 is taken by the consumer to start the stream
    consumed: list[int] = field(default_factory=lambda: [0])
    dropped: list[int] = field(default_factory=list)

    def produce(self) -> None:
        if self.strategy == "suspend":
            self.permits += 1
            self._fill()
            return
        item = self._take_next()
        if len(self.buffered) < self.capacity:
            self.buffered.append(item)
        elif self.strategy == "sliding":
            self.dropped.append(self.buffered.popleft())
            self.buffered.append(item)
        else:
            self.dropped.append(item)

    def consume(self) -> bool:
        if not self.buffered:
            return False
        self.consumed.append(self.buffered.popleft())
        self._fill()
        return True

    def finish(self) -> list[int]:
        rest = list(self.buffered)
        rest.extend(self._take_next() for _ in range(self.permits))
        return rest

    def _fill(self) -> None:
        while self.permits and len(self.buffered) < self.capacity:
            self.permits -= 1
            self.buffered.append(self._take_next())

    def _take_next(self) -> int:
        item, self.next_item = self.next_item, self.next_item + 1
        return item


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def run_schedule(
    capacity: int, strategy: str, steps: list[str]
) -> tuple[Model, list[int], list[int]]:
    model = Model(capacity, strategy)
    permits = asyncio.Semaphore(0)
    total = steps.count("p")

    pulled = 0  # items the source has handed out: the buffer's real footprint

    async def source() -> AsyncIterator[int]:
        nonlocal pulled
        pulled = 1
        yield 0
        for i in range(1, total + 1):
            await permits.acquire()
            pulled += 1
            yield i

    dropped: list[int] = []
    stream = streamfx.buffer(source(), capacity, strategy, on_drop=dropped.append)  # type: ignore[arg-type]
    consumed = [await anext(stream)]
    for step in steps:
        if step == "p":
            permits.release()
            model.produce()
        elif model.consume():
            consumed.append(await asyncio.wait_for(anext(stream), 1))
        await settle()
        assert pulled == model.next_item, "the source was pulled further than the model allows"
    assert consumed == model.consumed, "items taken during the schedule differ from the model"
    consumed.extend([item async for item in stream])
    return model, consumed, dropped


schedules = st.lists(st.sampled_from(["p", "c"]), max_size=60)
capacities = st.integers(min_value=1, max_value=6)


@settings(max_examples=150, deadline=None)
@given(
    capacity=capacities,
    strategy=st.sampled_from(["suspend", "sliding", "dropping"]),
    steps=schedules,
)
def test_buffer_matches_the_model(capacity: int, strategy: str, steps: list[str]) -> None:
    model, consumed, dropped = asyncio.run(run_schedule(capacity, strategy, steps))
    produced = list(range(steps.count("p") + 1))

    assert consumed == model.consumed + model.finish()
    assert dropped == model.dropped
    # Properties that hold whatever the model says:
    assert consumed == sorted(consumed), "order is kept"
    assert sorted(consumed + dropped) == produced, "kept + dropped = produced"
    if strategy == "suspend":
        assert consumed == produced and not dropped, "suspend loses nothing"
    if strategy == "sliding" and produced:
        assert consumed[-1] == produced[-1], "sliding never drops the newest item"
    if strategy == "dropping":
        assert consumed[0] == 0, "dropping never drops the first item"


# -- the drop rule: drop only when the consumer is not ready ---------------------------


lossy = st.sampled_from(["sliding", "dropping"])


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=8),
    strategy=lossy,
    count=st.integers(min_value=0, max_value=300),
    pauses=st.sets(st.integers(min_value=0, max_value=300), max_size=20),
)
def test_a_ready_consumer_never_loses_an_item(
    capacity: int, strategy: streamfx.Strategy, count: int, pauses: set[int]
) -> None:
    async def run() -> tuple[list[int], list[int]]:
        dropped: list[int] = []
        source = burst(count, pauses=pauses)
        stream = streamfx.buffer(source, capacity, strategy, on_drop=dropped.append)
        return [item async for item in stream], dropped

    consumed, dropped = asyncio.run(run())
    assert consumed == list(range(count))
    assert dropped == []


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=8),
    strategy=lossy,
    count_and_stall=st.integers(min_value=1, max_value=200).flatmap(
        lambda count: st.tuples(st.just(count), st.integers(min_value=1, max_value=count))
    ),
    pauses=st.sets(st.integers(min_value=0, max_value=200), max_size=20),
)
def test_a_stalled_consumer_loses_only_what_did_not_fit(
    capacity: int, strategy: streamfx.Strategy, count_and_stall: tuple[int, int], pauses: set[int]
) -> None:
    """The consumer takes `stall` items, then is away (it awaits an event the test
    controls) until the source has produced everything."""
    count, stall = count_and_stall

    async def run() -> tuple[list[int], list[int], list[bool]]:
        finished, resume = asyncio.Event(), asyncio.Event()
        received: list[int] = []
        dropped: list[int] = []
        dropped_while_away: list[bool] = []

        def on_drop(item: int) -> None:
            dropped.append(item)
            dropped_while_away.append(not resume.is_set() and len(received) == stall)

        async def consume() -> None:
            source = burst(count, pauses=pauses, finished=finished)
            async for item in streamfx.buffer(source, capacity, strategy, on_drop=on_drop):
                received.append(item)
                if len(received) == stall:
                    await resume.wait()

        consumer = asyncio.create_task(consume())
        await asyncio.wait_for(finished.wait(), 5)
        resume.set()
        await asyncio.wait_for(consumer, 5)
        return received, dropped, dropped_while_away

    received, dropped, dropped_while_away = asyncio.run(run())
    assert received[:stall] == list(range(stall)), "nothing is lost while the consumer is ready"
    assert received == sorted(received), "order is kept"
    assert sorted(received + dropped) == list(range(count)), "received + dropped = produced"
    assert len(set(dropped)) == len(dropped), "each drop is reported once"
    assert all(dropped_while_away), "items are dropped only while the consumer is away"
    after = received[stall:]
    assert len(after) == min(capacity, count - stall), "a full buffer's worth is kept"
    if strategy == "sliding":
        assert after == list(range(count - len(after), count)), "sliding keeps the newest"
    else:
        assert after == list(range(stall, stall + len(after))), "dropping keeps the oldest"
