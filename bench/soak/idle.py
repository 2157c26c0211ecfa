"""Idle scale: thousands of open SSE streams whose source never yields.

Figures: the server's resident memory per open stream (growth over the baseline,
divided by the streams), and how long the server takes to answer a plain request
while they are open. Checks: every stream got its headers, the server answers within
`ANSWER_MS` at p99, and once the clients reset their connections every source is
finalized and the tasks and descriptors are back to the baseline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bench.soak.client import Client, fetch
from bench.soak.common import back_to, gather_limited, settle, steady
from bench.soak.config import Sizes
from bench.soak.report import Table, percentile
from bench.soak.targets import Server, Target

PATH = "/sse?mode=idle&hello=0&hb=15"
ANSWER_MS = 100.0
PINGS = 200  # enough for a p99 that is not just the slowest one


async def open_idle(port: int) -> Client:
    client = await Client.get(port, PATH)
    async with asyncio.timeout(30):
        status = await client.head()
    if status != 200:
        client.abort()
        raise RuntimeError(f"idle stream answered {status}")
    return client


async def ping_times(port: int) -> list[float]:
    times = []
    for _ in range(PINGS):
        started = time.perf_counter()
        status, _ = await fetch(port, "/ping")
        if status == 200:
            times.append((time.perf_counter() - started) * 1000)
    return times


def started_at_least(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda figures: bool(figures["started"] >= count)


def table(sizes: Sizes) -> Table:
    return Table(
        "idle",
        f"idle scale: {sizes.idle_streams:,} idle SSE streams per server "
        f"({sizes.idle_streams_threaded:,} on a thread-per-stream WSGI server)",
        [
            "server",
            "streams",
            "KB/stream",
            "ping p50 ms",
            "ping p99 ms",
            "threads",
            "GC full ms",
            "finalizers",
            "tasks",
            "fds",
        ],
        notes=[
            "KB/stream: server RSS growth / streams (headers received, sources started).",
            f"ping: {PINGS} plain requests on fresh connections while the streams are open",
            f"(check: p99 <= {ANSWER_MS:.0f} ms). Then the clients reset: finalizers, and tasks",
            "and fds before the streams -> after they ended. threads: before -> while the",
            "streams are open. GC full: the server's longest full garbage collection so far",
            "(its pause stalls every stream at once).",
        ],
    )


async def measure(target: Target, server: Server, sizes: Sizes, table: Table) -> None:
    count = sizes.idle_streams_threaded if target.threaded else sizes.idle_streams
    warm = [await open_idle(server.port) for _ in range(10)]
    for client in warm:
        client.abort()
    base = await steady(server)
    jobs = [lambda: open_idle(server.port) for _ in range(count)]
    clients = await gather_limited(jobs, 100)
    await settle(server, started_at_least(base["started"] + count), 30)
    await asyncio.sleep(1.0)
    loaded = await server.stats()
    pings = await ping_times(server.port)
    pinged = await server.stats()  # with the collections the pings met
    for client in clients:
        client.abort()

    after, _ = await settle(server, back_to(base), 60)
    name = target.name
    check = table.checker(name, peer=not target.counted)
    per_stream = (loaded["rss_kb"] - base["rss_kb"]) / count
    p99 = percentile(pings, 0.99)
    table.add(
        [
            name,
            check("every stream opened", len(clients) == count, f"{len(clients):,}"),
            f"{per_stream:.1f}",
            f"{percentile(pings, 0.5):.1f}",
            check(f"answers within {ANSWER_MS:.0f} ms", p99 <= ANSWER_MS, f"{p99:.1f}"),
            f"{base['threads']}->{loaded['threads']}",
            f"{pinged['gc']['longest_ms'][2]:.0f}",
            check(
                "finalizers == streams",
                after["finalized"] == after["started"],
                f"{after['finalized']}/{after['started']}",
            ),
            check(
                "tasks back",
                after["tasks"] <= base["tasks"],
                f"{base['tasks']}->{after['tasks']}",
            ),
            check("fds back", after["fds"] <= base["fds"], f"{base['fds']}->{after['fds']}"),
        ],
        {
            "server": name,
            "streams": count,
            "kb_per_stream": per_stream,
            "pings_ms": pings,
            "threads": loaded["threads"],
            "gc": pinged["gc"],
        },
    )
