"""The demo's jobs on a `Broadcast` hub, through the running demo (``python -m
examples.demo``) and real HTTP clients that behave like the page's ``EventSource``:
they start from the job's ``since`` position, reconnect when the server ends the
stream and send the last id they saw as ``Last-Event-ID``.

- In one process: two subscribers follow one job; a drop ends both connections and
  both resume with no gap and no duplicate; an untrusted ``Last-Event-ID`` gets one
  ``reset`` event, never a 500.
- With two workers on Redis (``--workers 2``, the demo's own redis-server):
  subscribers on different workers both get a job published in another worker, and a
  subscriber that reconnects to another worker after a drop resumes with no gap.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from examples.demo.redis_server import RedisUnavailable, redis_server_binary
from tests._demo_server import running_demo

Block = tuple[str, str | None, str | None]
"""One SSE block: (event type, data or None when it had none, id or None)."""

JOB = {"steps": 30, "interval": 0.05, "pause": 0}
EVENTS = 1 + 30 + 3 + 1  # the start line, 30 steps, a log line every 10 steps, done


async def sse_blocks(lines: AsyncIterator[str]) -> AsyncIterator[Block]:
    event, data, event_id = "message", list[str](), None
    async for line in lines:
        if not line:
            if data or event_id is not None:
                yield event, "\n".join(data) if data else None, event_id
            event, data, event_id = "message", [], None
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value


@dataclass
class Follower:
    """A client following one job the way the page's EventSource does."""

    base: str
    job: dict[str, Any]
    avoid: set[int] = field(default_factory=set)
    """Worker pids this follower's *next* connection must not land on (it reconnects
    at once when one does, before reading any event)."""
    seqs: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    drops: int = 0
    resets: list[str] = field(default_factory=list)
    last_id: str | None = None
    done: bool = False
    attempts: int = 0
    progressed: asyncio.Event = field(default_factory=asyncio.Event)
    placed: asyncio.Event = field(default_factory=asyncio.Event)

    async def follow(self, client: httpx.AsyncClient, *, progress_at: int = 5) -> None:
        while not self.done:
            self.attempts += 1
            assert self.attempts < 200, "could not reach the wanted worker"
            await self._connection(client, progress_at)

    async def _connection(self, client: httpx.AsyncClient, progress_at: int) -> None:
        headers = {"Last-Event-ID": self.last_id} if self.last_id is not None else {}
        url = f"{self.base}/api/jobs/{self.job['id']}/events"
        params = {"since": self.job["since"]}
        async with client.stream("GET", url, params=params, headers=headers) as response:
            assert response.status_code == 200
            async for event, data, event_id in sse_blocks(response.aiter_lines()):
                if event == "worker":
                    pid = json.loads(data or "")["pid"]
                    if pid in self.avoid:
                        return  # not this worker: reconnect (nothing was read)
                    self.pids.append(pid)
                    self.avoid = set()
                    self.placed.set()
                    continue
                if event_id is not None:
                    self.last_id = event_id
                if event in ("log", "progress", "done"):
                    assert data is not None
                    self.seqs.append(json.loads(data)["seq"])
                    if len(self.seqs) >= progress_at:
                        self.progressed.set()
                    self.done = event == "done"
                elif event == "drop":
                    self.drops += 1
                elif event == "reset":
                    self.resets.append(data or "")

    def reconnect_elsewhere(self) -> None:
        """Make the next connection land on another worker than the current one."""
        self.avoid = {self.pids[-1]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_demo(tmp_path_factory.mktemp("demo") / "server.log") as server:
        yield server.base


async def start_job(client: httpx.AsyncClient, base: str) -> dict[str, Any]:
    response = await client.post(f"{base}/api/jobs", params=JOB)
    assert response.status_code == 201
    record: dict[str, Any] = response.json()
    return record


async def test_two_subscribers_follow_one_job_and_both_resume_after_a_drop(demo: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(30):
        job = await start_job(client, demo)
        followers = [Follower(demo, job), Follower(demo, job)]

        async def drop_once_both_progressed() -> None:
            await asyncio.gather(*(follower.progressed.wait() for follower in followers))
            dropped = await client.post(f"{demo}/api/jobs/{job['id']}/drop")
            assert dropped.status_code == 200

        await asyncio.gather(
            drop_once_both_progressed(), *(follower.follow(client) for follower in followers)
        )
    for follower in followers:
        assert follower.seqs == list(range(1, EVENTS + 1))
        assert follower.drops == 1
        assert len(follower.pids) == 2  # two connections, one worker
        assert follower.resets == []


async def test_a_page_opened_later_sees_the_whole_job_from_since(demo: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(30):
        job = await start_job(client, demo)
        first = Follower(demo, job)
        await first.follow(client)
        config = (await client.get(f"{demo}/api/config")).json()
        assert config["current_job"] == {key: job[key] for key in ("id", "since", "steps")}
        late = Follower(demo, config["current_job"])
        await late.follow(client)
    assert late.seqs == first.seqs == list(range(1, EVENTS + 1))


def header_bytes(value: str) -> bytes:
    """`value` as header bytes: Latin-1 where it can be (the server decodes headers as
    Latin-1, so ``²`` arrives as ``²``, which ``str.isdigit`` accepts), else UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


@pytest.mark.parametrize(
    "last_event_id",
    ["²", "9" * 5000, "١٢٣", "abc-1", "0-0", "-1", "1" * 64, "x" * 65],
    ids=["superscript", "5000-digits", "arabic-digits", "wrong-epoch", "zero", "neg", "64", "65"],
)
async def test_an_untrusted_last_event_id_gets_one_reset_never_a_500(
    demo: str, last_event_id: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(20):
        job = await start_job(client, demo)
        url = f"{demo}/api/jobs/{job['id']}/events"
        headers = {b"Last-Event-ID": header_bytes(last_event_id)}
        events: list[str] = []
        async with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            async for event, _, _ in sse_blocks(response.aiter_lines()):
                if event == "heartbeat" or len(events) == 3:
                    break
                events.append(event)
    # the worker's name, one reset, and then the live stream (here: the job's events)
    assert events[:2] == ["worker", "reset"]
    assert "reset" not in events[2:]


async def test_unknown_or_malformed_jobs_are_404(demo: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for job_id in ("000000000000", "not-a-job", "²" * 12):
            assert (await client.get(f"{demo}/api/jobs/{job_id}/events")).status_code == 404
            assert (await client.post(f"{demo}/api/jobs/{job_id}/drop")).status_code == 404


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        redis_server_binary()
    except RedisUnavailable as exc:
        pytest.skip(str(exc))
    log = tmp_path_factory.mktemp("demo-workers") / "server.log"
    with running_demo(log, workers=2) as server:
        yield server.base


async def test_workers_on_redis_share_jobs_and_resume_across_workers(two_workers: str) -> None:
    base = two_workers
    async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(60):
        config = (await client.get(f"{base}/api/config")).json()
        assert (config["backend"], config["workers"]) == ("redis", 2)
        job = await start_job(client, base)
        publisher = job["worker"]
        # one follower on another worker than the job's publisher, the other on a third
        # connection that must differ from the first follower's worker
        away = Follower(base, job, avoid={publisher})
        other = Follower(base, job)

        async def place_other() -> None:
            await away.placed.wait()
            other.avoid = {away.pids[0]}
            await other.follow(client, progress_at=10)

        async def drop_and_move() -> None:
            await asyncio.gather(away.progressed.wait(), other.progressed.wait())
            away.reconnect_elsewhere()
            other.reconnect_elsewhere()
            dropped = await client.post(f"{base}/api/jobs/{job['id']}/drop")
            assert dropped.status_code == 200

        await asyncio.gather(away.follow(client, progress_at=10), place_other(), drop_and_move())
    assert away.pids[0] != publisher  # the job's events crossed processes through Redis
    assert away.pids[0] != other.pids[0]  # subscribers on both workers
    for follower in (away, other):
        assert follower.seqs == list(range(1, EVENTS + 1))
        assert follower.drops == 1
        assert follower.resets == []
        first, second = follower.pids  # the reconnect landed on the other worker
        assert first != second
