"""Slow and stalled readers beside healthy ones.

Every stream follows one shared publisher (a tick every `Sizes.tick` seconds, each
event carrying its publish time and `Sizes.event_size` bytes). Two runs per server:

- A: the healthy clients alone; their latency (publish -> arrival) is the yardstick;
- B: the same healthy clients, plus stalled clients (a 4 KB receive buffer, never
  read) and slow ones (4 KB every 0.1 s, slower than the stream).

Stalled and slow clients connect as over a real network (`client.stalled`: Ethernet's
segment size, so the kernel holds tens of KB for them, not megabytes as loopback would).

Checks on B: every stalled client is evicted (its source finalized) within the write
timeout plus one heartbeat once its buffers are full (allowed: `FILL_S` for them to
fill, plus `SLACK_S`); the server's memory grows by at most (buffer capacity + 2)
events per stalled or slow reader plus 16 MB; the healthy clients' p99 latency while
the stalled clients are connected is within `RATIO` x run A's. Then everyone leaves:
sources finalized, tasks and descriptors back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from bench.soak.client import Client, reset, stalled
from bench.soak.common import back_to, settle, steady
from bench.soak.config import Sizes
from bench.soak.report import Table, percentile
from bench.soak.targets import Server, Target

RATIO = 1.5
FILL_S = 2.0  # what a stalled client's buffers (the server's, the kernel's) take to fill
SLACK_S = 1.0


class Latencies:
    def __init__(self) -> None:
        self.recording = False
        self.values: list[float] = []


async def healthy(port: int, path: str, latencies: Latencies, stop: asyncio.Event) -> int:
    """Read every event until `stop`; record latencies while recording; events read."""
    client = await Client.get(port, path)
    count = 0
    try:
        await client.head()
        while not stop.is_set() and client.ending == "open":
            for event in await client.events():
                now = time.perf_counter()
                parts = (event.data or "").split(" ", 2)
                if len(parts) == 3:
                    count += 1
                    if latencies.recording:
                        latencies.values.append((now - float(parts[1])) * 1000)
    finally:
        client.abort()
    return count


async def slow(port: int, path: str, stop: asyncio.Event) -> None:
    """Read 4 KB every 0.1 s (40 KB/s) from a raw socket until `stop`."""
    sock = await stalled(port, path)
    loop = asyncio.get_running_loop()
    try:
        while not stop.is_set():
            if not await loop.sock_recv(sock, 4096):
                return
            await asyncio.sleep(0.1)
    except OSError:
        return
    finally:
        reset(sock)


async def peak_rss(server: Server, stop: asyncio.Event, peak: list[int]) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError, RuntimeError):
            peak[0] = max(peak[0], (await server.stats())["rss_kb"])
        await asyncio.sleep(0.25)


async def cpu_rate(server: Server, seconds: float) -> float:
    """The server's CPU use over the next `seconds`, in cores."""
    before: float = (await server.stats())["cpu_s"]
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    after: float = (await server.stats())["cpu_s"]
    return (after - before) / (time.perf_counter() - started)


async def run_healthy(
    server: Server, path: str, sizes: Sizes, seconds: float, latencies: Latencies
) -> tuple[asyncio.Event, list[asyncio.Task[int]]]:
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(healthy(server.port, path, latencies, stop))
        for _ in range(sizes.healthy)
    ]
    return stop, tasks


def table(sizes: Sizes) -> Table:
    wt, hb = sizes.write_timeout, sizes.heartbeat
    rate = sizes.event_size / sizes.tick  # bytes per second per stream
    capacity = 64  # the default SSE buffer
    return Table(
        "readers",
        f"readers: {sizes.stalled} stalled + {sizes.slow} slow beside {sizes.healthy} healthy "
        f"(a {sizes.event_size} B event every {sizes.tick * 1000:.0f} ms, write_timeout {wt} s, "
        f"heartbeat {hb} s, default buffer: sliding 64; rows marked suspend: BufferPolicy(64, "
        '"suspend"))',
        [
            "server",
            "p99 alone ms",
            "p99 beside ms",
            "ratio",
            "CPU alone",
            "CPU stalled",
            "evicted",
            "after s",
            "slow evicted",
            "RSS +MB",
            "tasks",
            "fds",
        ],
        notes=[
            "p99: healthy clients' publish-to-arrival latency, alone (run A) and while the",
            f"stalled clients are connected (run B); check: ratio <= {RATIO}. evicted: stalled",
            "sources finalized; after: seconds from their connect until the last one was",
            f"(check: <= {FILL_S:.0f} s to fill their buffers at {rate / 1e3:.0f} KB/s + "
            f"write_timeout + heartbeat + {SLACK_S:.0f} s).",
            "CPU: the server's, in % of a core: over run A, and in run B while the stalled",
            f"clients' buffers are full and none is evicted yet ({FILL_S:.0f} s after they",
            "connected, for 0.8 x write_timeout).",
            f"RSS: peak growth in run B (check: <= {capacity + 2} events + 64 KiB of transport",
            "buffer per stalled or slow reader, + 16 MB).",
        ],
    )


SUSPEND_TOO = frozenset({"asgi / uvicorn", "aiohttp"})  # the comparison


async def measure(target: Target, server: Server, sizes: Sizes, table: Table) -> None:
    await measure_policy(target, server, sizes, table, "sliding")
    if sizes.readers_suspend_too and target.name in SUSPEND_TOO:
        await measure_policy(target, server, sizes, table, "suspend")


async def measure_policy(
    target: Target, server: Server, sizes: Sizes, table: Table, policy: str
) -> None:
    wt, hb = sizes.write_timeout, sizes.heartbeat
    capacity = 64  # the default SSE buffer
    path = f"/sse?gap={sizes.tick}&size={sizes.event_size}&hb={hb}&wt={wt}&policy={policy}"
    warm = await Client.get(server.port, path)  # warm-up (WSGI: its loop starts)
    await warm.head()
    warm.abort()
    base = await steady(server)
    # run A: healthy alone
    alone = Latencies()
    stop, tasks = await run_healthy(server, path, sizes, sizes.readers_seconds, alone)
    await asyncio.sleep(1.0)
    alone.recording = True
    cpu_alone = await cpu_rate(server, sizes.readers_seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    mid = await steady(server)
    # run B: healthy beside stalled and slow ones
    beside = Latencies()
    stop, tasks = await run_healthy(server, path, sizes, sizes.readers_seconds, beside)
    await asyncio.sleep(1.0)
    peak = [mid["rss_kb"]]
    watching = asyncio.Event()
    watcher = asyncio.create_task(peak_rss(server, watching, peak))
    connected = time.perf_counter()
    stuck = [await stalled(server.port, path) for _ in range(sizes.stalled)]
    slow_stop = asyncio.Event()
    slow_tasks = [
        asyncio.create_task(slow(server.port, path, slow_stop)) for _ in range(sizes.slow)
    ]
    beside.recording = True  # from when they are all connected
    bound = FILL_S + wt + hb + SLACK_S
    before = mid["finalized"]
    evicted_at: float | None = None
    # the stalled window: their buffers are full, their sources still produce
    window: list[tuple[float, float]] = []  # (time, CPU seconds) at its start and end
    deadline = connected + max(sizes.readers_seconds, bound + 2.0)
    figures = mid
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.25)
        figures = await server.stats()
        now = time.perf_counter()
        due = now - connected >= FILL_S + 0.8 * wt * len(window)
        if len(window) < 2 and due and figures["finalized"] == before:  # none evicted yet
            window.append((now, figures["cpu_s"]))
        if evicted_at is None and figures["finalized"] - before >= sizes.stalled:
            evicted_at = now - connected
            beside.recording = False
            if time.perf_counter() - connected >= sizes.readers_seconds:
                break
    beside.recording = False
    evicted = min(figures["finalized"] - before, sizes.stalled)
    slow_gone = max(0, figures["finalized"] - before - sizes.stalled)
    stop.set()
    slow_stop.set()
    watching.set()
    await asyncio.gather(*tasks, *slow_tasks, watcher, return_exceptions=True)
    for sock in stuck:
        reset(sock)

    after, _ = await settle(server, back_to(base), 20)
    name = target.name if policy == "sliding" else f"{target.name} (suspend)"
    check = table.checker(name, peer=target.peer)
    cpu_stalled = float("nan")
    if len(window) == 2:
        cpu_stalled = (window[1][1] - window[0][1]) / (window[1][0] - window[0][0])
    p99_alone = percentile(alone.values, 0.99)
    p99_beside = percentile(beside.values, 0.99)
    ratio = p99_beside / p99_alone if p99_alone else float("inf")
    growth_kb = peak[0] - mid["rss_kb"]
    limit_kb = ((capacity + 2) * sizes.event_size // 1024 + 64) * (sizes.stalled + sizes.slow)
    limit_kb += 16 << 10
    table.add(
        [
            name,
            f"{p99_alone:.1f}",
            f"{p99_beside:.1f}",
            check(f"healthy p99 within {RATIO}x", ratio <= RATIO, f"{ratio:.2f}"),
            f"{cpu_alone * 100:.0f}%",
            f"{cpu_stalled * 100:.0f}%",
            check("every stalled client evicted", evicted == sizes.stalled, f"{evicted}"),
            check(
                "evicted in time",
                evicted_at is not None and evicted_at <= bound,
                "never" if evicted_at is None else f"{evicted_at:.1f}",
            ),
            f"{slow_gone}/{sizes.slow}",
            check("memory bounded", growth_kb <= limit_kb, f"{growth_kb / 1024:+.1f}"),
            check(
                "tasks back",
                after["tasks"] <= base["tasks"],
                f"{base['tasks']}->{after['tasks']}",
            ),
            check("fds back", after["fds"] <= base["fds"], f"{base['fds']}->{after['fds']}"),
        ],
        {
            "server": name,
            "p99_alone_ms": p99_alone,
            "p99_beside_ms": p99_beside,
            "p50_alone_ms": percentile(alone.values, 0.5),
            "p50_beside_ms": percentile(beside.values, 0.5),
            "cpu_alone": cpu_alone,
            "cpu_stalled": cpu_stalled,
            "evicted": evicted,
            "evicted_after_s": evicted_at,
            "rss_growth_kb": growth_kb,
        },
    )
