"""Helpers the scenarios share: waiting on a server's figures, running many clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from bench.soak.targets import Server

T = TypeVar("T")


PEER_PATIENCE = 3.0  # a peer that leaks is shown as it is; no need to wait long for it


async def settle(
    server: Server, condition: Callable[[dict[str, Any]], bool], seconds: float
) -> tuple[dict[str, Any], bool]:
    """Poll the server's ``/stats`` until `condition` holds or `seconds` pass (at most
    `PEER_PATIENCE` for a peer); the last figures and whether the condition held.

    A server too busy to answer one poll in time (Django under uvicorn closing 5,000
    bodies, one thread hop each) is asked again until `seconds` pass; only a server
    that never answered raises `TimeoutError`."""
    if server.target.peer:
        seconds = min(seconds, PEER_PATIENCE)
    deadline = time.monotonic() + seconds
    while True:
        try:
            figures = await server.stats()
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
            continue
        if condition(figures):
            return figures, True
        if time.monotonic() > deadline:
            return figures, False
        await asyncio.sleep(0.1)


async def gather_limited(jobs: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run the jobs, at most `limit` at a time; their results in order."""
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


PEER_STILL = 10  # reads (0.1 s apart) a peer's figures stay the same: its baseline


async def steady(server: Server, seconds: float = 5.0) -> dict[str, Any]:
    """The server's figures once its sources are all finalized and its tasks, threads
    and descriptors read the same three times in a row (0.1 s apart), or after
    `seconds`: the baseline to compare with.

    A peer that never finalized some sources (aiohttp-sse after a reset) never gets
    there: its baseline is taken once all its figures, the unfinalized sources
    included, read the same `PEER_STILL` times in a row (about a second), instead of
    waiting out `seconds` before each case."""
    keys = ("tasks", "threads", "fds", "started", "finalized")
    deadline = time.monotonic() + seconds
    previous: list[tuple[int, ...]] = []
    peer = server.target.peer
    while True:
        figures = await server.stats()
        previous = [*previous[-(PEER_STILL - 1) :], tuple(figures[key] for key in keys)]
        unchanged = len(previous) >= 3 and len(set(previous[-3:])) == 1
        done = figures["started"] == figures["finalized"]
        if (done and unchanged) or time.monotonic() > deadline:
            return figures
        if peer and len(previous) == PEER_STILL and len(set(previous)) == 1:
            return figures
        await asyncio.sleep(0.1)


def back_to(
    base: dict[str, Any], thread_limit: int | None = None
) -> Callable[[dict[str, Any]], bool]:
    """The condition "every source finalized, and tasks, descriptors (and threads, up
    to `thread_limit` when given) no more than in `base`"."""

    def back(figures: dict[str, Any]) -> bool:
        return (
            figures["finalized"] == figures["started"]
            and figures["tasks"] <= base["tasks"]
            and figures["fds"] <= base["fds"]
            and (thread_limit is None or figures["threads"] <= thread_limit)
        )

    return back


async def unchanging(server: Server, seconds: float = 5.0) -> dict[str, Any]:
    """The server's figures once its tasks, threads, descriptors and started sources
    read the same three times in a row (0.1 s apart), or after `seconds`: a server
    done with what it was asked, its sources possibly still open."""
    keys = ("tasks", "threads", "fds", "started")
    deadline = time.monotonic() + seconds
    previous: list[tuple[int, ...]] = []
    while True:
        figures = await server.stats()
        previous = [*previous[-2:], tuple(figures[key] for key in keys)]
        if (len(previous) == 3 and len(set(previous)) == 1) or time.monotonic() > deadline:
            return figures
        await asyncio.sleep(0.1)
