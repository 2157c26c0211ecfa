"""Simulated long jobs that publish their events to a `Broadcast` hub.

A job is a task that publishes to its topic (``job:<id>``): a ``log`` line, then
``progress`` steps, more ``log`` lines, and ``done``. Each event's data carries
``seq``, the job's own count (1, 2, 3, ...), so that a page can check it saw every
event once; the hub gives each event its id, which is what a reconnecting browser
sends back as ``Last-Event-ID``. Replay, fan-out to every subscriber (in every
worker, on Redis) and resuming after a drop are the hub's work, not this module's.

A publish that the hub refuses (Redis unreachable) is retried until it is taken, so
no event of a job is lost while Redis restarts. `JobRunner` keeps at most
`MAX_JOBS` jobs running in this process (the oldest is cancelled first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from streamfx.broadcast import Broadcast, BroadcastError

__all__ = ["MAX_JOBS", "JobPlan", "JobRunner", "job_topic", "publish_until_taken"]

MAX_JOBS: Final = 32
RETRY_PUBLISH_EVERY: Final = 0.5
STAGES: Final = ("fetching input", "parsing", "transforming", "writing output")

logger = logging.getLogger("examples.demo")


def job_topic(job_id: str) -> str:
    return f"job:{job_id}"


@dataclass(frozen=True)
class JobPlan:
    """What a simulated job does: `steps` progress steps `interval` seconds apart, a
    log line every `log_every` steps, and one quiet spell of `pause` seconds half-way
    (long enough for heartbeats to show)."""

    steps: int = 120
    interval: float = 0.1
    log_every: int = 10
    pause: float = 3.0


async def publish_until_taken(hub: Broadcast, topic: str, item: Any, event: str) -> str:
    """`hub.publish`, retried every `RETRY_PUBLISH_EVERY` s while the backend refuses
    it (`BroadcastError`: Redis away), so that the event is published exactly once."""
    while True:
        try:
            return await hub.publish(topic, item, event=event)
        except BroadcastError as exc:
            if hub.closing:
                raise
            logger.warning("publish to %s refused (%s); retrying", topic, exc)
            await asyncio.sleep(RETRY_PUBLISH_EVERY)


async def simulate(hub: Broadcast, job_id: str, plan: JobPlan) -> None:
    """Publish the job's events to its topic, ``seq`` 1, 2, ... in order."""
    topic = job_topic(job_id)
    seq = 0

    async def emit(event: str, **data: Any) -> None:
        nonlocal seq
        seq += 1
        await publish_until_taken(hub, topic, {"seq": seq, **data}, event)

    started = time.monotonic()
    await emit("log", line=f"job {job_id} started: {plan.steps} steps")
    for step in range(1, plan.steps + 1):
        await asyncio.sleep(plan.interval)
        if step == plan.steps // 2 and plan.pause > 0:
            await emit("log", line=f"waiting {plan.pause:g} s for a slow dependency...")
            await asyncio.sleep(plan.pause)
            await emit("log", line="...the dependency answered")
        stage = STAGES[min(len(STAGES) - 1, (step - 1) * len(STAGES) // plan.steps)]
        percent = round(100 * step / plan.steps, 1)
        await emit("progress", step=step, total=plan.steps, percent=percent)
        if step % plan.log_every == 0:
            await emit("log", line=f"step {step}/{plan.steps}: {stage}")
    await emit("done", steps=plan.steps, seconds=round(time.monotonic() - started, 3))


class JobRunner:
    """The jobs running in this process, at most `max_jobs` of them."""

    def __init__(self, hub: Broadcast, max_jobs: int = MAX_JOBS) -> None:
        self.hub = hub
        self.max_jobs = max_jobs
        self._tasks: OrderedDict[str, asyncio.Task[None]] = OrderedDict()

    def start(self, job_id: str, plan: JobPlan) -> asyncio.Task[None]:
        """Start simulating `job_id` in a task (cancelling the oldest job if full)."""
        while len(self._tasks) >= self.max_jobs:
            _, oldest = self._tasks.popitem(last=False)
            oldest.cancel()
        task = asyncio.create_task(simulate(self.hub, job_id, plan), name=f"job-{job_id}")
        task.add_done_callback(_log_failure)
        self._tasks[job_id] = task
        return task

    def running(self) -> int:
        return sum(not task.done() for task in self._tasks.values())

    async def aclose(self) -> None:
        """Cancel every job and wait for it."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s failed", task.get_name(), exc_info=task.exception())
