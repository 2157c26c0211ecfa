"""`Waiter` (a subscriber's reusable future) and `Wakeups` (in order, in slices)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import itertools
from collections.abc import Generator
from typing import Any

import pytest

from streamfx.broadcast import _waiter
from streamfx.broadcast._waiter import SLICE, Waiter, wakeups_for

label: contextvars.ContextVar[str] = contextvars.ContextVar("label", default="none")


async def wait_once(waiter: Waiter) -> bool:
    try:
        return await waiter.arm()
    finally:
        waiter.disarm()


async def test_awaiting_returns_the_value_set_and_the_waiter_serves_again() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    for value in (True, False, True):
        task = asyncio.create_task(wait_once(waiter))
        await asyncio.sleep(0)
        assert waiter.armed and not waiter.done()
        waiter.set(value)
        waiter.set(not value)  # a second set changes nothing
        assert await task is value
        assert not waiter.armed


async def test_a_value_set_before_the_await_is_returned_at_once() -> None:
    waiter = Waiter(asyncio.get_running_loop()).arm()
    waiter.set(True)
    try:
        assert await waiter is True
    finally:
        waiter.disarm()


async def test_set_while_disarmed_changes_nothing() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    waiter.set(True)
    task = asyncio.create_task(wait_once(waiter))
    await asyncio.sleep(0)
    assert not task.done(), "the earlier set did not resolve the new wait"
    waiter.set(False)
    assert await task is False


async def test_cancelling_the_waiting_task_cancels_the_wait() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    task = asyncio.create_task(wait_once(waiter))
    await asyncio.sleep(0)
    task.cancel("bye")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not waiter.armed
    waiter.set(True)  # nothing is woken any more
    again = asyncio.create_task(wait_once(waiter))
    await asyncio.sleep(0)
    waiter.set(True)
    assert await again is True, "the waiter serves the next wait"


async def test_disarm_tells_whether_the_wait_ended_with_set_true() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    waiter.arm().set(True)
    assert waiter.disarm() is True
    waiter.arm().set(False)
    assert waiter.disarm() is False
    waiter.arm()
    assert waiter.disarm() is False, "still pending"
    waiter.arm().cancel()
    assert waiter.disarm() is False, "cancelled"
    waiter.set(True)  # disarmed: changes nothing
    assert waiter.disarm() is False


class Blocked:
    """An awaitable that hands its task the waiter itself, as a `Subscription` does."""

    def __init__(self, waiter: Waiter) -> None:
        self.waiter = waiter

    def __await__(self) -> Generator[Waiter, None, bool]:
        try:
            yield self.waiter.block()
        finally:
            woken = self.waiter.disarm()
        return woken


async def wait_blocked(waiter: Waiter) -> bool:
    return await Blocked(waiter)


async def test_a_blocked_waiter_is_waited_on_by_the_task_that_yields_it() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    for value in (True, False):
        task = asyncio.create_task(wait_blocked(waiter))
        await asyncio.sleep(0)
        assert waiter.armed and not waiter.done(), "the task waits on it"
        waiter.set(value)
        assert await task is value
        assert not waiter.armed


async def test_a_task_blocked_on_a_waiter_can_be_cancelled() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    task = asyncio.create_task(wait_blocked(waiter))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not waiter.armed


async def test_a_task_cancelled_after_its_wait_was_resolved_is_still_cancelled() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    task = asyncio.create_task(wait_once(waiter))
    await asyncio.sleep(0)
    waiter.set(True)
    task.cancel()  # as with a done future: the cancellation comes at the next step
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_waiters_set_in_one_turn_wake_in_order_each_in_its_context() -> None:
    loop = asyncio.get_running_loop()
    woken: list[str] = []

    async def wait_as(name: str, waiter: Waiter) -> None:
        label.set(name)
        await wait_once(waiter)
        woken.append(label.get())

    waiters = [Waiter(loop) for _ in range(5)]
    tasks = [asyncio.create_task(wait_as(f"w{i}", w)) for i, w in enumerate(waiters)]
    await asyncio.sleep(0)
    scheduled = len(loop._ready)  # type: ignore[attr-defined]
    for waiter in reversed(waiters):
        waiter.set(True)
    assert len(loop._ready) == scheduled + 1, "one loop callback for all"  # type: ignore[attr-defined]
    await asyncio.gather(*tasks)
    assert woken == ["w4", "w3", "w2", "w1", "w0"]


async def test_wake_ups_run_in_slices_and_the_loop_gets_its_turn_between(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A callback stops waking once `SLICE` has passed (the clock is read every 8
    wake-ups; here each read is one slice later), so what the loop had queued meanwhile
    runs before the rest; waiters set then wake behind the ones already queued."""
    looks = itertools.count()
    monkeypatch.setattr(_waiter, "_clock", lambda: next(looks) * SLICE)
    loop = asyncio.get_running_loop()
    woken: list[str] = []

    async def wait_as(name: str, waiter: Waiter) -> None:
        await wait_once(waiter)
        woken.append(name)

    waiters = [Waiter(loop) for _ in range(20)]
    late = Waiter(loop)
    tasks = [asyncio.create_task(wait_as(f"w{i}", w)) for i, w in enumerate(waiters)]
    tasks.append(asyncio.create_task(wait_as("late", late)))
    await asyncio.sleep(0)

    def loop_turn() -> None:
        woken.append("loop's turn")
        late.set(True)

    for waiter in waiters:
        waiter.set(True)
    loop.call_soon(loop_turn)
    await asyncio.gather(*tasks)
    first, rest = [f"w{i}" for i in range(8)], [f"w{i}" for i in range(8, 20)]
    assert woken == [*first, "loop's turn", *rest, "late"]


async def test_a_failing_wake_up_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        broken = Waiter(loop).arm()

        def fail(_: Waiter) -> None:
            raise RuntimeError("boom")

        broken.add_done_callback(fail)
        fine = Waiter(loop)
        task = asyncio.create_task(wait_once(fine))
        await asyncio.sleep(0)
        broken.set(True)
        fine.set(True)
        assert await task is True
        assert [type(c["exception"]) for c in reported] == [RuntimeError]
    finally:
        loop.set_exception_handler(None)


async def test_one_task_at_a_time() -> None:
    waiter = Waiter(asyncio.get_running_loop()).arm()
    waiter.add_done_callback(lambda _: None)
    with pytest.raises(RuntimeError, match="one task at a time"):
        waiter.add_done_callback(lambda _: None)
    waiter.disarm()


async def test_waiting_again_makes_no_object_the_collector_tracks() -> None:
    loop = asyncio.get_running_loop()
    waiter = Waiter(loop)
    rounds = 100

    async def loop_forever() -> None:
        for _ in range(rounds):
            await wait_once(waiter)

    task = asyncio.create_task(loop_forever())
    await asyncio.sleep(0)
    waiter.set(True)
    await asyncio.sleep(0)
    gc.collect()
    gc.disable()
    # What is alive now, held (no id reused) and left out of the count. Not gc.freeze():
    # its unfreeze would hand the collector every object the conftest froze, and this
    # test would be blamed for their finalizers.
    before = gc.get_objects()
    known = {id(thing) for thing in before}
    try:
        for _ in range(rounds - 2):
            waiter.set(True)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        made = sum(1 for thing in gc.get_objects() if id(thing) not in known)
    finally:
        del before
        gc.enable()
    waiter.set(True)
    await task
    assert made < rounds // 2, f"{made} objects alive after {rounds} waits"


def test_wakeups_are_kept_per_loop() -> None:
    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()
    try:
        assert wakeups_for(first) is wakeups_for(first)
        assert wakeups_for(second).loop is second
    finally:
        first.close()
        second.close()
