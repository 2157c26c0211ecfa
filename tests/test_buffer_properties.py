"""Property tests: `buffer` against a model of what must come out for a given
producer/consumer schedule.

A schedule is a list of steps. ``"p"`` lets the source produce one more item;
``"c"`` makes the consumer take one item if the model says one is waiting; ``"s"``
moves the loop's (fake) clock on by `STALL_AFTER` seconds while the consumer stays
away. After each step the event loop runs until everything settles. The model is a
plain deque with the strategy's rule; in ``"suspend"`` mode the source is not even
asked for an item while the buffer is full, so permits to produce pile up instead.

With `stall_after` a lossy buffer *pauses* once an ``"s"`` step has passed since the
consumer last took (it has been away `stall_after`): the next item pulled into the
full buffer, whether drops were going on or the buffer has only just filled, is kept
in hand instead of dropped, and the source is not asked for more (the permits pile
up) until the consumer takes; then the item in hand goes in and the permits are spent
by the strategy's rule (the clock counts from that take). Without it ``"s"`` changes
nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from hypothesis import example, given, settings
from hypothesis import strategies as st

import streamfx
from tests._clock import install_fake_clock
from tests._sources import burst

STALL_AFTER = 1.0


@dataclass
class Model:
    capacity: int
    strategy: str
    stall_after: float | None = None
    buffered: deque[int] = field(default_factory=deque)
    permits: int = 0
    next_item: int = 1  # item 0 is taken by the consumer to start the stream
    consumed: list[int] = field(default_factory=lambda: [0])
    dropped: list[int] = field(default_factory=list)
    away_long: bool = False  # `stall_after` has passed since the consumer last took
    in_hand: int | None = None  # paused: the item pulled into the full buffer

    def produce(self) -> None:
        self.permits += 1
        if self.strategy == "suspend":
            self._fill()
        elif self.in_hand is None:
            self.permits -= 1
            self._pull_lossy()

    def _pull_lossy(self) -> None:
        item = self._take_next()
        if len(self.buffered) < self.capacity:
            self.buffered.append(item)
        elif self.away_long:
            self.in_hand = item  # paused: no drop, and no pull until the consumer takes
        else:
            if self.strategy == "sliding":
                self.dropped.append(self.buffered.popleft())
                self.buffered.append(item)
            else:
                self.dropped.append(item)

    def stall(self) -> None:
        """`STALL_AFTER` seconds pass with the consumer away."""
        if self.stall_after is not None:
            self.away_long = True

    def consume(self) -> bool:
        if not self.buffered:
            return False
        self.consumed.append(self.buffered.popleft())
        self.away_long = False
        if self.strategy == "suspend":
            self._fill()
        elif self.in_hand is not None:
            self.buffered.append(self.in_hand)
            self.in_hand = None
            while self.permits:  # the source is pulled again, by the strategy's rule
                self.permits -= 1
                self._pull_lossy()
        return True

    def finish(self) -> list[int]:
        rest = list(self.buffered)
        if self.in_hand is not None:
            rest.append(self.in_hand)
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
    capacity: int, strategy: str, steps: list[str], stall_after: float | None = None
) -> tuple[Model, list[int], list[int]]:
    clock = install_fake_clock(asyncio.get_running_loop())
    model = Model(capacity, strategy, stall_after)
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
    stream = streamfx.buffer(
        source(),
        capacity,
        strategy,  # type: ignore[arg-type]
        on_drop=dropped.append,
        stall_after=stall_after,
    )
    consumed = [await anext(stream)]
    for step in steps:
        if step == "p":
            permits.release()
            model.produce()
        elif step == "s":
            clock.advance(STALL_AFTER)
            model.stall()
        elif model.consume():
            consumed.append(await asyncio.wait_for(anext(stream), 1))
        await settle()
        assert pulled == model.next_item, "the source was pulled further than the model allows"
    assert consumed == model.consumed, "items taken during the schedule differ from the model"
    consumed.extend([item async for item in stream])
    return model, consumed, dropped


schedules = st.lists(st.sampled_from(["p", "c"]), max_size=60)
stalling_schedules = st.lists(st.sampled_from(["p", "p", "c", "s"]), max_size=60)
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


@settings(max_examples=300, deadline=None)
@given(
    capacity=capacities,
    strategy=st.sampled_from(["suspend", "sliding", "dropping"]),
    stall_after=st.sampled_from([None, STALL_AFTER]),
    steps=stalling_schedules,
)
# A pause, then the consumer back: the item in hand, then the permits by the rule.
@example(capacity=1, strategy="sliding", stall_after=STALL_AFTER, steps=list("ppspppcpp"))
# The consumer away `stall_after` before the buffer filled: it pauses at the first
# item that would be dropped, and drops nothing.
@example(capacity=1, strategy="sliding", stall_after=STALL_AFTER, steps=list("ppcpspp"))
# The consumer back before the clock ran out: drops again until it has been away long.
@example(capacity=1, strategy="sliding", stall_after=STALL_AFTER, steps=list("ppspcppspp"))
@example(capacity=2, strategy="dropping", stall_after=STALL_AFTER, steps=list("pppcsppsp"))
def test_buffer_with_stall_after_matches_the_model(
    capacity: int, strategy: str, stall_after: float | None, steps: list[str]
) -> None:
    model, consumed, dropped = asyncio.run(run_schedule(capacity, strategy, steps, stall_after))
    produced = list(range(steps.count("p") + 1))

    assert consumed == model.consumed + model.finish()
    assert dropped == model.dropped
    assert consumed == sorted(consumed), "order is kept"
    assert sorted(consumed + dropped) == produced, "kept + dropped = produced"
    if strategy == "suspend" or stall_after is None:
        # "s" is only time passing: the schedule without it gives the same result.
        plain = asyncio.run(run_schedule(capacity, strategy, [s for s in steps if s != "s"]))
        assert (plain[1], plain[2]) == (consumed, dropped)


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
