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
from bench.soak.common import back_to, gather_limited, settle, steady, unchanging
from bench.soak.config import Sizes
from bench.soak.report import Table, percentile
from bench.soak.targets import Server, Target

PATH = "/sse?mode=idle&hello=0&hb=15"
# A thread-per-stream (WSGI) server sees a client's reset only when it next writes:
# a heartbeat every `Sizes.idle_heartbeat_threaded` seconds instead of 15 s ends its
# streams that soon after the clients' resets instead of 15 s (it is longer than the
# streams are open before the resets, so that on an unloaded machine no heartbeat is
# due while they are measured: about 4 s in the full run, 0.6 s in the short one).
THREADED_PATH = "/sse?mode=idle&hello=0&hb={heartbeat:g}"
WARM_PATH = "/sse?n=1&gap=0.01&hb=15"  # a stream that ends by itself: nothing left open
ANSWER_MS = 100.0
PINGS = 200  # enough for a p99 that is not just the slowest one
# Streams being opened at once: 400 was measured no faster (the open phase 1-4 s
# slower on six of eight servers, Django's bare view 17 s faster; idle 183 s against
# 154 s in all).
OPENING = 100


async def open_idle(port: int, path: str = PATH) -> Client:
    client = await Client.get(port, path)
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
        f"({sizes.idle_streams_threaded:,} where the server holds a thread per stream: "
        "WSGI, Django)",
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
            "KB/stream: server RSS growth / streams (headers received, sources started,",
            "the server's tasks, threads and fds no longer moving). Heartbeats every 15 s",
            f"({sizes.idle_heartbeat_threaded:g} s on WSGI: it sees a reset only when it writes).",
            f"ping: {PINGS} plain requests on fresh connections while the streams are open",
            f"(check: p99 <= {ANSWER_MS:.0f} ms). Then the clients reset: finalizers, and tasks",
            "and fds before the streams -> after they ended. threads: before -> while the",
            "streams are open. GC full: the server's longest full garbage collection so far",
            "(its pause stalls every stream at once).",
        ],
    )


async def measure(target: Target, server: Server, sizes: Sizes, table: Table) -> None:
    count = sizes.idle_streams_threaded if target.holds_a_thread_per_stream else sizes.idle_streams
    path = THREADED_PATH.format(heartbeat=sizes.idle_heartbeat_threaded)
    path = path if target.threaded else PATH
    for _ in range(10):  # warm-up (WSGI: its loop starts), read to the end
        await fetch(server.port, WARM_PATH)
    base = await steady(server)
    phases = {"warm": time.perf_counter()}  # when each phase ended (seconds spent: raw)
    jobs = [lambda: open_idle(server.port, path) for _ in range(count)]
    clients = await gather_limited(jobs, OPENING)
    phases["open"] = time.perf_counter()
    await settle(server, started_at_least(base["started"] + count), 30)
    loaded = await unchanging(server)
    phases["settle"] = time.perf_counter()
    pings = await ping_times(server.port)
    pinged = await server.stats()  # with the collections the pings met
    phases["pings"] = time.perf_counter()
    for client in clients:
        client.abort()

    after, _ = await settle(server, back_to(base), 60)
    phases["close"] = time.perf_counter()
    ends = list(phases.values())
    spent = {key: round(ends[i] - ends[i - 1], 2) for i, key in enumerate(phases) if i}
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
            "phase_seconds": spent,
        },
    )
