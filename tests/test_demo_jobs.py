"""The demo's replayable job events (examples/demo/jobs.py): a client that reconnects
with the last id it saw gets every later event exactly once, however often the server
drops it and whenever it does."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.demo.jobs import Job, JobBoard, JobPlan, ReplayGone


async def publish(job: Job, n: int) -> None:
    for i in range(n):
        job.publish("progress", step=i)
        await asyncio.sleep(0)
    job.publish("done")


async def follow_with_drops(job: Job, drops: set[int]) -> list[int]:
    """Follow `job`, dropping every connection after the counts in `drops`, and
    reconnecting each time with the last id received (as EventSource does)."""
    seen: list[int] = []
    while not (job.done and seen and seen[-1] == job.last_seq):
        async for event in job.follow(seen[-1] if seen else 0):
            seen.append(event.seq)
            if len(seen) in drops:
                job.drop()
        await asyncio.sleep(0)
    return seen


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), drops=st.sets(st.integers(1, 45), max_size=6))
def test_reconnecting_after_any_drops_sees_every_event_once(n: int, drops: set[int]) -> None:
    async def scenario() -> list[int]:
        job = Job("j")
        producer = asyncio.create_task(publish(job, n))
        try:
            return await follow_with_drops(job, drops)
        finally:
            await producer

    assert asyncio.run(scenario()) == list(range(1, n + 2))


async def test_history_is_bounded_and_an_old_id_is_refused() -> None:
    job = Job("j", history=5)
    for i in range(12):
        job.publish("progress", step=i)
    assert len(job.events) == 5
    assert [e.seq for e in job.events_after(7)] == [8, 9, 10, 11, 12]
    with pytest.raises(ReplayGone, match=r"events 4\.\.7 of job j are gone"):
        job.events_after(3)


async def test_board_keeps_at_most_max_jobs_and_cancels_on_close() -> None:
    board = JobBoard(max_jobs=2)
    plan = JobPlan(steps=1000, interval=1.0, pause=0)
    first, second, third = (board.start(plan) for _ in range(3))
    assert board.get(first.id) is None
    assert board.get(third.id) is third
    assert first.task is not None
    await asyncio.gather(first.task, return_exceptions=True)
    assert first.task.cancelled()
    await board.aclose()
    assert second.task is not None and second.task.cancelled()
    assert board.get(third.id) is None
