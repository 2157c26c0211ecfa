"""`Deadlines`: one loop timer for many lazy deadlines, in order, never early, cancellable."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from streamfx._core.deadlines import Deadline, Deadlines, deadlines_for


class ManualLoop:
    """The two things `Deadlines` asks of a loop, with a clock moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Any]] = []
        self.errors: list[dict[str, Any]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any) -> Handle:
        handle = Handle(when, callback)
        self.timers.append((when, handle))
        return handle

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self.errors.append(context)

    def live_timers(self) -> list[Handle]:
        return [handle for _, handle in self.timers if not handle.cancelled]

    def advance(self, to: float) -> None:
        """Move the clock to `to`, running every timer due on the way, in order."""
        while True:
            due = [h for h in self.live_timers() if h.when <= to]
            if not due:
                break
            first = min(due, key=lambda h: h.when)
            self.now = max(self.now, first.when)
            first.cancelled = True
            first.callback()
        self.now = to


class Handle:
    def __init__(self, when: float, callback: Any) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Noted(Deadline):
    __slots__ = ("calls", "name")

    def __init__(self, name: int, calls: list[tuple[int, float, float]]) -> None:
        super().__init__()
        self.name = name
        self.calls = calls

    def expired(self, now: float) -> None:
        self.calls.append((self.name, self.at, now))


def make(loop: ManualLoop) -> Deadlines:
    return Deadlines(loop)  # type: ignore[arg-type]


@given(
    st.lists(st.tuples(st.floats(0, 100, allow_nan=False), st.booleans()), min_size=1, max_size=200)
)
def test_every_deadline_not_cancelled_expires_once_in_order_never_early(
    plan: list[tuple[float, bool]],
) -> None:
    loop = ManualLoop()
    deadlines = make(loop)
    calls: list[tuple[int, float, float]] = []
    items = [Noted(n, calls) for n in range(len(plan))]
    for item, (at, _) in zip(items, plan, strict=True):
        deadlines.schedule(item, at)
    for item, (_, cancelled) in zip(items, plan, strict=True):
        if cancelled:
            deadlines.cancel(item)
    assert len(loop.live_timers()) <= 1, "one loop timer for all of them"
    loop.advance(200)
    kept = [n for n, (_, cancelled) in enumerate(plan) if not cancelled]
    assert sorted(name for name, _, _ in calls) == kept
    assert all(now >= at for _, at, now in calls), "never before its time"
    assert [at for _, at, _ in calls] == sorted(at for _, at, _ in calls), "in time order"
    assert loop.live_timers() == [] and len(deadlines) == 0


def test_all_cancelled_leaves_no_timer_and_no_reference() -> None:
    loop = ManualLoop()
    deadlines = make(loop)
    items = [Noted(n, []) for n in range(1000)]
    for n, item in enumerate(items):
        deadlines.schedule(item, 10.0 + n)
    for item in items[:900]:
        deadlines.cancel(item)
    assert len(deadlines._heap) < 200, "cancelled entries are dropped in bulk"
    for item in items[900:]:
        deadlines.cancel(item)
    assert deadlines._heap == [] and loop.live_timers() == []
    assert not any(item.queued for item in items)


def test_rescheduling_from_expired_and_an_earlier_deadline_rearms() -> None:
    loop = ManualLoop()
    deadlines = make(loop)
    calls: list[tuple[int, float, float]] = []

    class Again(Noted):
        __slots__ = ()

        def expired(self, now: float) -> None:
            super().expired(now)
            if len(self.calls) < 3:
                deadlines.schedule(self, now + 5)

    late, again = Noted(1, calls), Again(2, calls)
    deadlines.schedule(late, 100.0)
    deadlines.schedule(again, 1.0)  # earlier than the armed timer: armed again
    deadlines.schedule(again, 0.5)  # already waiting: keeps its time
    loop.advance(101)
    assert [(name, at) for name, at, _ in calls] == [(2, 1.0), (2, 6.0), (2, 11.0), (1, 100.0)]


def test_deadlines_rescheduled_from_expired_arm_one_timer_per_run() -> None:
    """Issue 15, idle memory: an `expired` that scheduled its owner again (a watch
    checking every interval) armed the loop timer for that time, which the end of the
    run then cancelled and armed again for the earliest: two `call_at` per run, and
    on asyncio's loop every cancelled handle (and its copy of the context) stays in
    the loop's heap until its time: about half a handle per idle aiohttp stream."""
    loop = ManualLoop()
    deadlines = make(loop)
    calls: list[tuple[int, float, float]] = []

    class Every(Noted):
        __slots__ = ()

        def expired(self, now: float) -> None:
            super().expired(now)
            deadlines.schedule(self, now + 1000)

    for n in range(100):
        deadlines.schedule(Every(n, calls), 1.0 + n)
    loop.advance(150)
    assert len(calls) == 100
    assert len(loop.timers) == 1 + 100, "the first, then one loop timer armed per run"
    assert len(loop.live_timers()) == 1


def test_a_cancelled_deadline_scheduled_again_is_revived() -> None:
    loop = ManualLoop()
    deadlines = make(loop)
    calls: list[tuple[int, float, float]] = []
    item, other = Noted(1, calls), Noted(2, calls)
    deadlines.schedule(other, 3.0)
    deadlines.schedule(item, 1.0)
    deadlines.cancel(item)
    deadlines.schedule(item, 2.0)  # still waiting at 1.0: revived there
    loop.advance(5)
    assert calls == [(1, 1.0, 1.0), (2, 3.0, 3.0)]


def test_a_failing_expired_is_reported_and_the_others_still_run() -> None:
    loop = ManualLoop()
    deadlines = make(loop)
    calls: list[tuple[int, float, float]] = []

    class Failing(Deadline):
        __slots__ = ()

        def expired(self, now: float) -> None:
            raise RuntimeError("boom")

    deadlines.schedule(Failing(), 1.0)
    deadlines.schedule(Noted(2, calls), 1.0)
    deadlines.schedule(Noted(3, calls), 2.0)
    loop.advance(3)
    assert [name for name, _, _ in calls] == [2, 3]
    [error] = loop.errors
    assert isinstance(error["exception"], RuntimeError)


async def test_on_a_real_loop_deadlines_fire_at_their_time() -> None:
    loop = asyncio.get_running_loop()
    deadlines = deadlines_for(loop)
    assert deadlines_for(loop) is deadlines
    done = asyncio.Event()
    calls: list[tuple[int, float, float]] = []

    class Last(Noted):
        __slots__ = ()

        def expired(self, now: float) -> None:
            super().expired(now)
            done.set()

    start = loop.time()
    for n in range(5):
        deadlines.schedule(Noted(n, calls), start + 0.01 * (n + 1))
    deadlines.schedule(Last(9, calls), start + 0.08)
    async with asyncio.timeout(5):
        await done.wait()
    assert [name for name, _, _ in calls] == [0, 1, 2, 3, 4, 9]
    assert all(now >= at for _, at, now in calls)
