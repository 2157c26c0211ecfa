"""Simulated long jobs whose events can be replayed from any ``Last-Event-ID``.

A `Job` numbers its events 1, 2, 3... and keeps the last `HISTORY` of them. A client
that reconnects with ``Last-Event-ID: n`` gets every event after ``n`` from the history,
then the live ones, each exactly once and in order (`Job.follow`). `Job.drop` ends every
open `follow` at once, which is how the page's "drop connection" button makes the
server close the connection; the browser's ``EventSource`` then reconnects and resumes.

The `JobBoard` keeps at most `MAX_JOBS` jobs (the oldest is cancelled and forgotten
first), so memory stays bounded however many jobs are started.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

HISTORY: Final = 10_000
"""Events kept per job for replay. A job of the demo emits a few hundred."""

MAX_JOBS: Final = 32


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event of a job: its number (the SSE id), its type and its JSON data."""

    seq: int
    type: str
    data: str


@dataclass(eq=False)
class _Follower:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False


class ReplayGone(Exception):
    """The events after the requested id are no longer in the history."""


class Job:
    """A job's event history and the clients following it."""

    def __init__(self, job_id: str, history: int = HISTORY) -> None:
        self.id = job_id
        self.events: deque[JobEvent] = deque(maxlen=history)
        self.done = False
        self.last_seq = 0
        self.task: asyncio.Task[None] | None = None
        self._followers: set[_Follower] = set()

    def publish(self, type: str, **data: Any) -> JobEvent:
        """Append an event (numbered ``last_seq + 1``) and wake every follower."""
        self.last_seq += 1
        event = JobEvent(self.last_seq, type, json.dumps({"seq": self.last_seq, **data}))
        self.events.append(event)
        if type == "done":
            self.done = True
        for follower in self._followers:
            follower.wake.set()
        return event

    def drop(self) -> int:
        """End every open `follow` (after the event it is sending); return how many."""
        for follower in self._followers:
            follower.dropped = True
            follower.wake.set()
        return len(self._followers)

    def events_after(self, seq: int) -> list[JobEvent]:
        if not self.events or seq >= self.last_seq:
            return []
        first = self.events[0].seq
        if seq + 1 < first:
            raise ReplayGone(f"events {seq + 1}..{first - 1} of job {self.id} are gone")
        return list(itertools.islice(self.events, seq + 1 - first, None))

    async def follow(self, after: int) -> AsyncIterator[JobEvent]:
        """Every event numbered above `after`, in order, each once: first the history,
        then live events as they are published. Ends after the job's ``done`` event,
        or as soon as `drop` is called. Raises `ReplayGone` if the history no longer
        reaches back to ``after + 1``."""
        follower = _Follower()
        self._followers.add(follower)
        try:
            while True:
                follower.wake.clear()
                for event in self.events_after(after):
                    yield event
                    after = event.seq
                    if follower.dropped:
                        return
                if follower.dropped or (self.done and after >= self.last_seq):
                    return
                if after < self.last_seq:
                    continue
                await follower.wake.wait()
        finally:
            self._followers.discard(follower)


@dataclass(frozen=True)
class JobPlan:
    """What a simulated job does: `steps` progress steps `interval` seconds apart, a
    log line every `log_every` steps, and one quiet spell of `pause` seconds half-way
    (long enough for heartbeats to show)."""

    steps: int = 120
    interval: float = 0.1
    log_every: int = 10
    pause: float = 3.0


class JobBoard:
    """The running and recent jobs, at most `MAX_JOBS` of them."""

    def __init__(self, max_jobs: int = MAX_JOBS) -> None:
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def start(self, plan: JobPlan) -> Job:
        """Create a job and start simulating it in a task."""
        while len(self._jobs) >= self.max_jobs:
            _, oldest = self._jobs.popitem(last=False)
            oldest.drop()
            if oldest.task is not None:
                oldest.task.cancel()
        job = Job(secrets.token_hex(6))
        job.task = asyncio.create_task(_simulate(job, plan), name=f"job-{job.id}")
        self._jobs[job.id] = job
        return job

    async def aclose(self) -> None:
        """Cancel every running job and wait for it."""
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        for job in self._jobs.values():
            job.drop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._jobs.clear()


STAGES: Final = ("fetching input", "parsing", "transforming", "writing output")


async def _simulate(job: Job, plan: JobPlan) -> None:
    started = time.monotonic()
    job.publish("log", line=f"job {job.id} started: {plan.steps} steps")
    for step in range(1, plan.steps + 1):
        await asyncio.sleep(plan.interval)
        if step == plan.steps // 2 and plan.pause > 0:
            job.publish("log", line=f"waiting {plan.pause:g} s for a slow dependency...")
            await asyncio.sleep(plan.pause)
            job.publish("log", line="...the dependency answered")
        stage = STAGES[min(len(STAGES) - 1, (step - 1) * len(STAGES) // plan.steps)]
        job.publish(
            "progress", step=step, total=plan.steps, percent=round(100 * step / plan.steps, 1)
        )
        if step % plan.log_every == 0:
            job.publish("log", line=f"step {step}/{plan.steps}: {stage}")
    job.publish("done", steps=plan.steps, seconds=round(time.monotonic() - started, 3))
