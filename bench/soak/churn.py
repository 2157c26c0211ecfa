"""Churn: many connect / read the first event / abort (TCP reset) cycles.

Checks: every source's finalizer ran (finalized == started, and started counts every
cycle), the server's live tasks, threads and descriptors come back to what they were
before the cycles, and the resident memory is flat over the second half (it may grow
while allocators warm up; after that, a leak shows as steady growth).
"""

from __future__ import annotations

import asyncio
import time

from bench.soak.client import Client
from bench.soak.common import back_to, settle, steady
from bench.soak.config import Sizes
from bench.soak.report import Table
from bench.soak.targets import Server, Target

PATH = "/sse?gap=0.25&hb=15"  # a WSGI server sees a reset only when it writes
SAMPLES = 10
WARM_UP = 200
FLAT_KB = 2048  # the most the second half may grow, in KB


async def cycle(port: int) -> None:
    client = await Client.get(port, PATH)
    try:
        async with asyncio.timeout(10):
            await client.head()
            while True:
                if any(event.data == "hello" for event in await client.events()):
                    return
                if client.ending != "open":
                    raise RuntimeError(f"ended ({client.ending}) before the first event")
    finally:
        client.abort()


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


def table(sizes: Sizes) -> Table:
    n = sizes.churn_cycles
    return Table(
        "churn",
        f"churn: {n:,} connect / first event / abort cycles per server "
        f"({sizes.churn_concurrency} at a time)",
        [
            "server",
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
            f"the end; 2nd half: RSS growth over the second half (check: <= {FLAT_KB} KB).",
            f"Each server gets {sizes.churn_seconds:.0f} s at most (fewer cycles then, shown).",
            f"{WARM_UP} warm-up cycles first. A threaded (WSGI) server keeps the threads its pool",
            "grew (gthread: up to --threads, shown as the limit): the check is that limit.",
        ],
    )


async def measure(target: Target, server: Server, sizes: Sizes, table: Table) -> None:
    n = sizes.churn_cycles
    # warm-up at full concurrency (a threaded server grows its pool to what it needs)
    await cycles(server.port, WARM_UP, sizes.churn_concurrency)
    base = await steady(server)
    rss = [base["rss_kb"]]
    started = time.perf_counter()
    failed = done = 0
    for _ in range(SAMPLES):
        failed += await cycles(server.port, n // SAMPLES, sizes.churn_concurrency)
        done += n // SAMPLES
        rss.append((await server.stats())["rss_kb"])
        if time.perf_counter() - started > sizes.churn_seconds:
            break  # the time box: fewer cycles, reported as such
    rate = done / (time.perf_counter() - started)
    thread_limit = max(base["threads"], server.threads + 4 if target.threaded else 0)
    after, _ = await settle(server, back_to(base, thread_limit), 15)
    check = table.checker(target.name, peer=not target.counted)
    half = rss[(len(rss) - 1) // 2]
    growth = rss[-1] - half
    table.add(
        [
            target.name,
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
            check("RSS flat in the 2nd half", growth <= FLAT_KB, f"{growth:+d}"),
        ],
        {"server": target.name, "rate": rate, "rss_kb": rss, "base": base, "after": after},
    )
