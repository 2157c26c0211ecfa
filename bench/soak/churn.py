"""Churn: many connect / read the first event / abort (TCP reset) cycles.

Checks: every source's finalizer ran (finalized == started, and started counts every
cycle), the server's live tasks, threads and descriptors come back to what they were
before the cycles, and the resident memory is flat over the second half (it may grow
while allocators warm up; after that, a leak shows as steady growth: the check is on
the trend of the second half, `second_half`, not on a one-off step).

What comes before the baseline, so that the RSS check measures what a cycle leaves
behind and not a server settling: a thread-per-request server's pool is filled
(`fill_the_pool`), and the warm-up runs until the RSS levels off (`warm_up`).
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.soak.client import Client
from bench.soak.common import back_to, settle, steady
from bench.soak.config import Sizes
from bench.soak.report import Table
from bench.soak.targets import Server, Target

PATH = "/sse?gap=0.25&hb=15"  # a WSGI server sees a reset only when it writes
SAMPLES = 10
WARM_UP = 200  # the fewest cycles in a warm-up round
WARM_ROUNDS = 5  # the most warm-up rounds (the full run saw 2-4; bounds the soak's time)
WARM_FLAT_KB = 256  # a warm-up round that grew RSS by no more ends the warm-up
FLAT_KB = 2048  # the most the second half may grow, in KB
FILL_SECONDS = 60.0  # for every stream of `fill_the_pool` to read its first event
# Threads a WSGI server's pool is filled to, per concurrent client: what
# `bench.soak.__main__.threads_needed` reserves for churn (gthread reached 270 threads
# in 30,000 cycles at 32 clients). Not the whole pool: the idle scenario, next on the
# same server, measures the RSS per idle stream, a thread each; a pool filled to its
# 1,050 threads here left it 0.5 KB a stream instead of a thread's cost.
POOL_PER_CLIENT = 8


async def cycle(port: int) -> None:
    client = await Client.get(port, PATH)
    try:
        await first_event(client)
    finally:
        client.abort()


async def first_event(client: Client, seconds: float = 10.0) -> None:
    """Wait (`seconds` at most) until `client` has read the stream's first event."""
    async with asyncio.timeout(seconds):
        await client.head()
        while True:
            if any(event.data == "hello" for event in await client.events()):
                return
            if client.ending != "open":
                raise RuntimeError(f"ended ({client.ending}) before the first event")


async def fill_the_pool(port: int, threads: int) -> int:
    """Hold `threads` streams open at once, each past its first event, then reset them
    all; how many opened. A thread-per-request server's pool is then as large as it can
    grow (each stream held one of its threads), and each of its threads has served a
    cycle: the threads it would otherwise start during the cycles, lazily and as many
    as the aborted requests that linger (until their next write sees the reset) make
    busy at once, are in the baseline."""

    async def held() -> Client | None:
        try:
            client = await Client.get(port, PATH)
        except OSError:
            return None
        try:
            # a server starting a thousand threads at once answers the last ones late
            await first_event(client, FILL_SECONDS)
        except (OSError, RuntimeError, TimeoutError):
            client.abort()
            return None
        return client

    clients = await asyncio.gather(*(held() for _ in range(threads)))
    opened = [client for client in clients if client is not None]
    for client in opened:
        client.abort()
    return len(opened)


async def cycles(port: int, count: int, concurrency: int) -> int:
    """Run `count` cycles, `concurrency` at a time; how many failed."""
    failures = 0
    remaining = count

    async def worker() -> None:
        nonlocal failures, remaining
        while remaining > 0:
            remaining -= 1
            try:
                await cycle(port)
            except (OSError, RuntimeError, TimeoutError):
                failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


async def warm_up(server: Server, rounds_of: int, concurrency: int) -> int:
    """Cycles in rounds of `rounds_of` until a round leaves the server's RSS within
    `WARM_FLAT_KB` of where it started (at most `WARM_ROUNDS`); the cycles run.

    The allocators' and the garbage collector's high-water marks settle over the first
    thousands of cycles: aiohttp's RSS grew 11-13 MB over its first 2,000-4,000 and
    then stayed within 0.4 MB to 30,000 (three runs), while its traced Python memory
    after a full collection did not grow over 20,000. Most of that rise was garbage:
    each aborted stream left ~46 objects in reference cycles (streamfx's channel and
    write watchdog held the request; fixed since, 5 remain: asyncio's transport),
    freed only by a full collection, about once per 1,000 cycles; it is 3-5 MB now.
    A 200-cycle warm-up left that rise to the measured cycles, and a late step of it
    to the second half (+2.7 MB once). A leak never levels off here, and shows in the
    measured cycles all the same."""
    done = 0
    previous = (await server.stats())["rss_kb"]
    for _ in range(WARM_ROUNDS):
        await cycles(server.port, rounds_of, concurrency)
        done += rounds_of
        now = (await server.stats())["rss_kb"]
        if now - previous <= WARM_FLAT_KB:
            break
        previous = now
    return done


def table(sizes: Sizes) -> Table:
    n = sizes.churn_cycles
    return Table(
        "churn",
        f"churn: {n:,} connect / first event / abort cycles per server "
        f"({sizes.churn_concurrency} at a time)",
        [
            "server",
            "warm-up",
            "cycles",
            "cycles/s",
            "failed",
            "finalizers",
            "tasks",
            "threads",
            "fds",
            "RSS MB",
            "2nd half KB",
        ],
        notes=[
            "finalizers: finalized / started (started includes warm-up); tasks, threads,",
            "fds: before -> after the cycles (after settling); RSS: before, at half, at",
            "the end; 2nd half: the RSS's trend over the second half, the median growth of",
            f"its intervals times their number (check: <= {FLAT_KB} KB), and (its growth): a",
            "leak grows it in every interval, an allocator's high-water mark in one.",
            f"Each server gets {sizes.churn_seconds:.0f} s at most (fewer cycles then, shown).",
            f"warm-up: cycles before the baseline, in rounds of {rounds_of(sizes):,} until one",
            f"grows RSS by {WARM_FLAT_KB} KB at most ({WARM_ROUNDS} rounds at most; see",
            "churn.warm_up). A threaded (WSGI) server's pool is filled before that (+pool:",
            f"{POOL_PER_CLIENT} streams a client held open at once, then reset; fill_the_pool):",
            "gthread starts threads lazily, ~47 KB of RSS each, and kept starting them",
            "during the cycles (132 -> 270 over 30,000), its RSS stepping with each.",
        ],
    )


def second_half(rss: list[int]) -> tuple[int, int]:
    """The RSS samples' second half, in KB: (growth from its first sample to its last,
    trend: the median growth of its intervals times their number).

    The check is on the trend. A leak grows the RSS in every interval, and its trend is
    its growth; an allocator's high-water mark rising once grows it in one interval:
    aiohttp's RSS, flat from 2,000 to 8,000 cycles, rose 3.5 MB by 12,000, then stayed
    within 0.2 MB to 30,000 (the RSS keeps what the allocators took, whatever freed it
    since, and more connections waiting on a busy machine take more). Its growth is
    shown beside it."""
    half = (len(rss) - 1) // 2
    steps = [later - earlier for earlier, later in zip(rss[half:-1], rss[half + 1 :], strict=True)]
    if not steps:
        return 0, 0
    return rss[-1] - rss[half], round(statistics.median(steps) * len(steps))


def rounds_of(sizes: Sizes) -> int:
    """Cycles per warm-up round: as many as between two RSS samples."""
    return max(WARM_UP, sizes.churn_cycles // SAMPLES)


async def measure(target: Target, server: Server, sizes: Sizes, table: Table) -> None:
    n = sizes.churn_cycles
    filled = None
    if target.threaded:
        pool = min(server.threads, POOL_PER_CLIENT * sizes.churn_concurrency)
        filled = await fill_the_pool(server.port, pool)
    warmed = await warm_up(server, rounds_of(sizes), sizes.churn_concurrency)
    base = await steady(server)
    rss, threads = [base["rss_kb"]], [base["threads"]]
    started = time.perf_counter()
    failed = done = 0
    for _ in range(SAMPLES):
        failed += await cycles(server.port, n // SAMPLES, sizes.churn_concurrency)
        done += n // SAMPLES
        figures = await server.stats()
        rss.append(figures["rss_kb"])
        threads.append(figures["threads"])
        if time.perf_counter() - started > sizes.churn_seconds:
            break  # the time box: fewer cycles, reported as such
    rate = done / (time.perf_counter() - started)
    thread_limit = max(base["threads"], server.threads + 4 if target.threaded else 0)
    after, _ = await settle(server, back_to(base, thread_limit), 15)
    check = table.checker(target.name, peer=not target.counted)
    half = rss[(len(rss) - 1) // 2]
    growth, trend = second_half(rss)
    table.add(
        [
            target.name,
            f"{warmed:,}" + ("" if filled is None else f" +pool {filled:,}"),
            f"{done:,}",
            f"{rate:,.0f}",
            check("no failed cycle", failed == 0, str(failed)),
            check(
                "finalizers == cycles",
                after["finalized"] == after["started"] == base["started"] + done,
                f"{after['finalized']}/{after['started']}",
            ),
            check(
                "tasks back", after["tasks"] <= base["tasks"], f"{base['tasks']}->{after['tasks']}"
            ),
            check(
                "threads back",
                after["threads"] <= thread_limit,
                f"{base['threads']}->{after['threads']}",
            ),
            check("fds back", after["fds"] <= base["fds"], f"{base['fds']}->{after['fds']}"),
            f"{rss[0] / 1024:.0f}/{half / 1024:.0f}/{rss[-1] / 1024:.0f}",
            check("RSS flat in the 2nd half", trend <= FLAT_KB, f"{trend:+d} ({growth:+d})"),
        ],
        {
            "server": target.name,
            "rate": rate,
            "rss_kb": rss,
            "second_half_kb": {"growth": growth, "trend": trend},
            "threads": threads,  # at each RSS sample
            "warm_up_cycles": warmed,
            "pool_filled": filled,
            "base": base,
            "after": after,
        },
    )
