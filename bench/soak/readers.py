"""Slow and stalled readers beside healthy ones.

Every stream follows one shared publisher (a tick every `Sizes.tick` seconds, each
event carrying its publish time and `Sizes.event_size` bytes). Per server:

- A: the healthy clients alone, half of `Sizes.readers_seconds` before run B and half
  after it; their latency (publish -> arrival) is the yardstick: the lower of the two
  halves' p99, so that a burst from another process on the machine during run A never
  loosens the check (A/A, one half's p99 over the other's, shows that noise);
- B: the same healthy clients, plus stalled clients (a 4 KB receive buffer, never
  read) and slow ones (4 KB every 0.1 s, slower than the stream).

The client polls the server's ``/stats`` every `POLL_S` seconds in both runs (the same
load of its own in each). Stalled and slow clients connect as over a real network
(`client.stalled`: Ethernet's segment size, so the kernel holds tens of KB for them,
not megabytes as loopback would).

Checks on B:

- every stalled client is evicted (its source finalized) within the write timeout plus
  one heartbeat *from when it stalled*. Timed per stream on the server: from the
  handover of the chunk that never left (its buffers were full: the moment the write
  timeout counts from; streamfx reports each chunk's handover to a recording metrics
  hook, a peer's source is resumed after each send) to the finalization of its source.
  The time from the first connect is shown too: it adds the connects (sequential) and
  the time the buffers take to fill at the stream's rate, neither of which is the
  eviction's;
- the server's memory grows by at most (buffer capacity + 2) events per stalled or slow
  reader plus 16 MB;
- the healthy clients' p99 latency is within `RATIO` x run A's, over the window from
  when the last stalled client stalled until the last one is evicted: the stalled
  clients waiting for eviction, then evicted. Before that window, while 200 clients
  connect at once and their buffers fill (until then they are fast readers), the p99
  is shown per phase, not checked: a burst of arrivals is churn's subject.

Then everyone leaves: sources finalized, tasks and descriptors back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bench.soak.client import Client, fetch, reset, stalled
from bench.soak.common import back_to, settle, steady
from bench.soak.config import Sizes
from bench.soak.report import Table, percentile
from bench.soak.targets import Server, Target

RATIO = 1.5
FILL_S = 3.0  # the most a stalled client's buffers (the server's, the kernel's) take to fill
SLACK_S = 1.0
POLL_S = 0.25  # the client's /stats polling, in both runs
GC_SEEN: list[dict[str, float]] = []  # run A's garbage-collector figures, in order
SETUP_S = 10.0  # the most the server may take to start the stalled and slow streams


class Latencies:
    """The healthy clients' latencies (ms), each with its arrival time, and the
    window (`since`, `until`: perf_counter) whose samples count."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (arrival, latency ms)
        self.since = float("inf")
        self.until = float("inf")

    def add(self, arrival: float, latency_ms: float) -> None:
        self.samples.append((arrival, latency_ms))

    def between(self, since: float, until: float) -> list[float]:
        return [ms for at, ms in self.samples if since <= at < until]

    @property
    def values(self) -> list[float]:
        return self.between(self.since, self.until)


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
                    latencies.add(now, (now - float(parts[1])) * 1000)
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


class Monitor:
    """Polls the server's ``/stats`` every `POLL_S` seconds, the same in both runs (so
    that the client's own load is the same in each), keeping every answer with the
    time it arrived: the CPU over any window, the peak RSS, the evictions."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.polls: list[tuple[float, dict[str, Any]]] = []
        self.updated = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                figures = await self.server.stats()
                self.polls.append((time.perf_counter(), figures))
                self.updated.set()
            await asyncio.sleep(POLL_S)

    async def next(self) -> dict[str, Any]:
        """The next answer."""
        self.updated.clear()
        await self.updated.wait()
        return self.polls[-1][1]

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def cpu(self, since: float, until: float) -> float:
        """The server's CPU use between the first and the last poll in the window, in
        cores (NaN if they are less than half a second apart)."""
        inside = [(at, figures["cpu_s"]) for at, figures in self.polls if since <= at <= until]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.5:
            return float("nan")
        return float(inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    def gc(self, since: float, until: float) -> dict[str, float]:
        """The server's garbage-collector pauses between the first and the last poll in
        the window: full (generation 2) collections, and ms paused per second."""
        inside = [figures["gc"] for at, figures in self.polls if since <= at <= until]
        times = [at for at in (at for at, _ in self.polls) if since <= at <= until]
        if len(inside) < 2:
            return {"full": float("nan"), "ms_per_s": float("nan")}
        paused = sum(inside[-1]["total_ms"]) - sum(inside[0]["total_ms"])
        return {
            "full": inside[-1]["count"][2] - inside[0]["count"][2],
            "ms_per_s": paused / (times[-1] - times[0]),
        }

    def peak_rss(self) -> int:
        return max(int(figures["rss_kb"]) for _, figures in self.polls)


async def run_alone(server: Server, path: str, sizes: Sizes) -> tuple[Latencies, float]:
    """Healthy clients alone for half of `Sizes.readers_seconds` (after a second to
    settle): their latencies and the server's CPU use."""
    latencies = Latencies()
    stop, tasks = await run_healthy(server, path, sizes, latencies)
    await asyncio.sleep(1.0)
    monitor = Monitor(server)
    latencies.since = time.perf_counter()
    await asyncio.sleep(sizes.readers_seconds / 2)
    latencies.until = time.perf_counter()
    await monitor.stop()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    GC_SEEN.append(monitor.gc(latencies.since, latencies.until))
    return latencies, monitor.cpu(latencies.since, latencies.until)


async def run_healthy(
    server: Server, path: str, sizes: Sizes, latencies: Latencies
) -> tuple[asyncio.Event, list[asyncio.Task[int]]]:
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(healthy(server.port, path, latencies, stop))
        for _ in range(sizes.healthy)
    ]
    return stop, tasks


def table(sizes: Sizes) -> Table:
    wt, hb = sizes.write_timeout, sizes.heartbeat
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
            "A/A",
            "samples",
            "B p99 by phase",
            "CPU alone",
            "CPU stalled",
            "evicted",
            "after stall s",
            "after connect s",
            "slow evicted",
            "RSS +MB",
            "tasks",
            "fds",
        ],
        notes=[
            "p99: healthy clients' publish-to-arrival latency, alone (run A: "
            f"{sizes.readers_seconds / 2:g} s before run B",
            f"and {sizes.readers_seconds / 2:g} s after it; the lower p99 of the two) and "
            "beside the stalled and slow clients (run B: from when",
            "the last stalled client stalled, its buffers full, until the last one was",
            f"evicted); check: ratio <= {RATIO}. A/A: run A's second half's p99 / its first",
            "half's (the noise: other processes on the machine). samples: A's halves/B.",
            "B p99 by phase: while the stalled clients connect and their buffers fill (not",
            "checked: 200 clients arriving at once is churn's subject, and until their",
            "buffers are full they are fast readers), while all are stalled, while they are",
            f"evicted. The client polls /stats every {POLL_S} s in both runs.",
            "evicted: stalled sources finalized. after stall: the slowest eviction, timed per",
            "stream from the handover of its chunk that never left (the server's buffers for",
            "it were full: when the write timeout starts) to its source's finalization",
            "(check: <= write_timeout + heartbeat). after connect: from the first stalled",
            "connect to the last eviction (shown, not checked: it adds the connects and the",
            "time the buffers take to fill).",
            "CPU: the server's, in % of a core: over run A, and in run B while every stalled",
            "client is stalled and none is evicted yet (nan when that is under 0.5 s).",
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
    tags = [f"{policy[:2]}{index}" for index in range(sizes.stalled)]
    await fetch(server.port, "/hook?mode=record")  # a peer answers 404: its sources time
    warm = await Client.get(server.port, path)  # warm-up (WSGI: its loop starts)
    await warm.head()
    warm.abort()
    base = await steady(server)
    # run A, first half: healthy alone
    alone_before, cpu_before = await run_alone(server, path, sizes)
    mid = await steady(server)
    # run B: healthy beside stalled and slow ones
    beside = Latencies()
    stop, tasks = await run_healthy(server, path, sizes, beside)
    await asyncio.sleep(1.0)
    monitor = Monitor(server)
    connected = time.perf_counter()
    stuck = [await stalled(server.port, f"{path}&tag={tag}") for tag in tags]
    slow_stop = asyncio.Event()
    slow_tasks = [
        asyncio.create_task(slow(server.port, path, slow_stop)) for _ in range(sizes.slow)
    ]
    expected = mid["started"] + sizes.healthy + sizes.stalled + sizes.slow
    bound = wt + hb
    figures = mid
    while figures["started"] < expected and time.perf_counter() < connected + SETUP_S:
        figures = await monitor.next()
    started_all = time.perf_counter()
    deadline = started_all + FILL_S + bound + SLACK_S
    while time.perf_counter() < deadline:
        figures = await monitor.next()
        if all(tag in figures["evictions"] for tag in tags):
            break
    times = [figures["evictions"][tag] for tag in tags if tag in figures["evictions"]]
    evictions = [end - handed for handed, end in times]
    evicted = len(evictions)
    if evicted == sizes.stalled:
        # every stalled client has stalled (its last chunk was handed over) until the
        # last one is evicted: what the stalled clients cost the healthy ones
        beside.since = max(handed for handed, _ in times)
        first_eviction = min(end for _, end in times)
        beside.until = max(end for _, end in times)
    else:
        beside.since, first_eviction = started_all + FILL_S, float("inf")
        beside.until = time.perf_counter()
    slow_gone = max(0, figures["finalized"] - mid["finalized"] - evicted)
    cpu_stalled = monitor.cpu(beside.since, first_eviction)
    peak = monitor.peak_rss()
    await monitor.stop()
    stop.set()
    slow_stop.set()
    await asyncio.gather(*tasks, *slow_tasks, return_exceptions=True)
    for sock in stuck:
        reset(sock)

    after, _ = await settle(server, back_to(base), 20)
    # run A, second half: healthy alone again (the baseline spans run B in time)
    alone_after, cpu_after = await run_alone(server, path, sizes)
    await fetch(server.port, "/hook?mode=none")
    alone = [*alone_before.values, *alone_after.values]  # for the p50
    cpu_alone = (cpu_before + cpu_after) / 2
    name = target.name if policy == "sliding" else f"{target.name} (suspend)"
    check = table.checker(name, peer=not target.counted)
    p99_before = percentile(alone_before.values, 0.99)
    p99_after = percentile(alone_after.values, 0.99)
    # the quieter half: noise from other processes in run A never loosens the check
    p99_alone = min(p99_before, p99_after)
    p99_beside = percentile(beside.values, 0.99)
    ratio = p99_beside / p99_alone if p99_alone else float("inf")
    slowest = max(evictions, default=float("nan"))
    from_connect = beside.until - connected if evicted == sizes.stalled else None
    gc_beside = monitor.gc(beside.since, beside.until)
    growth_kb = peak - mid["rss_kb"]
    limit_kb = ((capacity + 2) * sizes.event_size // 1024 + 64) * (sizes.stalled + sizes.slow)
    limit_kb += 16 << 10
    phases = {
        "setup_and_fill": beside.between(connected, beside.since),
        "stalled": beside.between(beside.since, first_eviction),
        "evicting": beside.between(first_eviction, beside.until),
    }
    table.add(
        [
            name,
            f"{p99_alone:.1f}",
            f"{p99_beside:.1f}",
            check(f"healthy p99 within {RATIO}x", ratio <= RATIO, f"{ratio:.2f}"),
            f"{p99_after / p99_before:.2f}",
            f"{len(alone_before.values)}+{len(alone_after.values)}/{len(beside.values)}",
            "/".join(f"{percentile(values, 0.99):.0f}" for values in phases.values()),
            f"{cpu_alone * 100:.0f}%",
            f"{cpu_stalled * 100:.0f}%",
            check("every stalled client evicted", evicted == sizes.stalled, f"{evicted}"),
            check(
                "evicted in time",
                evicted == sizes.stalled and slowest <= bound,
                f"{slowest:.2f}",
            ),
            "never" if from_connect is None else f"{from_connect:.1f}",
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
            "p50_alone_ms": percentile(alone, 0.5),
            "p99_alone_before_ms": p99_before,
            "p99_alone_after_ms": p99_after,
            "p50_beside_ms": percentile(beside.values, 0.5),
            "samples_alone": len(alone),
            "samples_beside": len(beside.values),
            "p99_by_phase_ms": {key: percentile(values, 0.99) for key, values in phases.items()},
            "samples_by_phase": {key: len(values) for key, values in phases.items()},
            "cpu_alone": cpu_alone,
            "cpu_stalled": cpu_stalled,
            "evicted": evicted,
            "evictions_after_stall_s": sorted(evictions),
            "evicted_after_connect_s": from_connect,
            "rss_growth_kb": growth_kb,
            "gc_alone": GC_SEEN[-2:],
            "gc_beside": gc_beside,
            "gc_pauses_b": [
                (round(at - connected, 3), gen, round(ms, 2))
                for at, gen, ms in figures["gc"]["recent"]
                if at >= connected
            ],
            "phase_times": [
                0,
                beside.since - connected,
                first_eviction - connected,
                beside.until - connected,
            ],
        },
    )
