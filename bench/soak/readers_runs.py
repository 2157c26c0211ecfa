"""The readers scenario's runs (see `bench.soak.readers`): the healthy clients alone
(run A), and beside stalled and slow ones (run B), with the server's ``/stats`` polled
throughout.

Each run's result is a `Latencies` (the healthy clients' publish-to-arrival latencies,
by kernel arrival time: `bench.soak.stamped`) and, for run B, a `Beside`: the window
that counts, the evictions and the server's figures over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.soak.client import reset, stalled
from bench.soak.config import Sizes
from bench.soak.stamped import StampedReader
from bench.soak.targets import Server

FILL_S = 3.0  # when not every stalled client was evicted: B's window starts this late
# The most a stalled client's buffers (the server's, the kernel's) may take to fill
# before run B stops waiting for its eviction. Run B waits on the server's figures,
# not on a fixed allowance: until every stalled stream is evicted, or every one left
# is overdue (no handover for write_timeout + heartbeat + `SLACK_S`: a failed check
# already). A fixed 3 s was too short for waitress under the README's settings: it
# holds 256 KiB per connection before a write blocks, and a server busy with 240
# streams feeds each at a fraction of the stream's rate, so its stalled clients
# stalled (and were evicted, in time) after run B had stopped looking.
FILL_CAP_S = 30.0
SLACK_S = 1.0
POLL_S = 0.25  # the client's /stats polling, in both runs
GC_SEEN: list[dict[str, float]] = []  # run A's garbage-collector figures, in order
SETUP_S = 10.0  # the most the server may take to start the stalled and slow streams
# After every healthy client read its first tick, before a run counts (a fixed second
# before: 4 s a row spent waiting on what a condition tells).
SETTLE_S = 0.2
POLL_SPANS: list[tuple[float, float]] = []  # every /stats poll: (asked, answered)


class ClientPauses:
    """This (the client's) process's garbage-collector pauses: (start, generation, ms),
    perf_counter. A pause of the client delays its reads, and an event read late is
    stamped with the newest packet of its read (`bench.soak.stamped`): a diagnostic of
    how much of a p99 is the client's."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, int, float]] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            ms = (time.perf_counter() - self._started) * 1000
            self.pauses.append((self._started, info["generation"], ms))

    def between(
        self, since: float, until: float, min_ms: float = 1.0
    ) -> list[tuple[float, int, float]]:
        """The pauses of at least `min_ms` in the window, their start relative to `since`."""
        return [
            (round(at - since, 3), gen, round(ms, 1))
            for at, gen, ms in self.pauses
            if since <= at < until and ms >= min_ms
        ]


CLIENT_PAUSES = ClientPauses()


@contextlib.contextmanager
def client_gc_paused() -> Iterator[None]:
    """This (the client's) process's cyclic garbage collector off for a run, collected
    before it. A full collection of the client's objects (the samples, 240 sockets and
    their coroutines) paused it for 50 ms in run B, and every event its healthy readers
    then read late was stamped with the newest packet of the read, which showed as the
    server's latency: the worst publishes of a run B lined up with that pause. Runs A
    and B alike: the client's garbage is not the server's cost in either."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def near_polls(latencies: Latencies, share: float = 0.01, after_s: float = 0.005) -> float:
    """Of the worst `share` of the counted samples, the fraction that arrived while a
    ``/stats`` poll was being answered or within `after_s` after it (a diagnostic: how
    much of a p99 the polling itself decides)."""
    window = [(ms, at) for at, ms in latencies.samples if latencies.since <= at < latencies.until]
    worst = sorted(window, reverse=True)[: max(1, int(len(window) * share))]
    spans = [(asked, answered + after_s) for asked, answered in POLL_SPANS]
    near = sum(1 for _, at in worst if any(lo <= at <= hi for lo, hi in spans))
    return near / len(worst) if worst else float("nan")


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


async def healthy(
    port: int, path: str, latencies: Latencies, stop: asyncio.Event, reading: asyncio.Event
) -> int:
    """Read every event until `stop`, recording each one's latency from its publish
    to the kernel's receipt of it (`StampedReader`: the server's latency, without this
    process's queueing); `reading` is set at the first tick read. The number of
    events read."""
    count = 0

    def arrived(arrival: float, data: str) -> None:
        nonlocal count
        parts = data.split(" ", 2)
        if len(parts) == 3:
            count += 1
            latencies.add(arrival, (arrival - float(parts[1])) * 1000)
            reading.set()

    reader = await StampedReader.get(port, path, arrived)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([stopped, reader.ended], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        reader.close()
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
            asked = time.perf_counter()
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                figures = await self.server.stats()
                answered = time.perf_counter()
                self.polls.append((answered, figures))
                POLL_SPANS.append((asked, answered))
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
    """Healthy clients alone for half of `Sizes.readers_seconds` (once each read a
    tick: `run_healthy`): their latencies and the server's CPU use. The client's
    garbage collector is off meanwhile (`client_gc_paused`)."""
    with client_gc_paused():
        return await _run_alone(server, path, sizes)


async def _run_alone(server: Server, path: str, sizes: Sizes) -> tuple[Latencies, float]:
    latencies = Latencies()
    stop, tasks = await run_healthy(server, path, sizes, latencies)
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
    """Start the healthy clients; return once every one has read a tick (at most
    `SETUP_S`), and `SETTLE_S` more: the connects are over, the stream is steady."""
    stop = asyncio.Event()
    reading = [asyncio.Event() for _ in range(sizes.healthy)]
    tasks = [
        asyncio.create_task(healthy(server.port, path, latencies, stop, first)) for first in reading
    ]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SETUP_S):
            await asyncio.gather(*(first.wait() for first in reading))
    await asyncio.sleep(SETTLE_S)
    return stop, tasks


def still_due(figures: dict[str, Any], tags: list[str], overdue_s: float) -> bool:
    """Whether a stalled stream may still be evicted in time: one not evicted yet
    that is still filling its buffers (handed a chunk within `overdue_s`) or has not
    started."""
    evicted, handed = figures["evictions"], figures["handed"]
    now = time.perf_counter()
    return any(
        tag not in evicted and (tag not in handed or now - handed[tag] <= overdue_s) for tag in tags
    )


@dataclass
class Beside:
    """One run B: the healthy clients' latencies (their window: from when the last
    stalled client stalled to the last eviction) and what the server did meanwhile."""

    latencies: Latencies
    connected: float  # the first stalled connect (perf_counter)
    first_eviction: float
    evictions: list[float]  # per evicted stream: from its last handover to its finalization
    slow_gone: int
    cpu_stalled: float
    peak_rss_kb: int
    gc: dict[str, float]
    gc_pauses: list[tuple[float, int, float]] = field(default_factory=list)

    @property
    def phases(self) -> dict[str, list[float]]:
        """The latencies per phase: connecting and filling, all stalled, evicting."""
        latencies = self.latencies
        return {
            "setup_and_fill": latencies.between(self.connected, latencies.since),
            "stalled": latencies.between(latencies.since, self.first_eviction),
            "evicting": latencies.between(self.first_eviction, latencies.until),
        }


async def run_beside(
    server: Server, path: str, sizes: Sizes, tags: list[str], mid: dict[str, Any]
) -> Beside:
    """Run B: the healthy clients, then one stalled client per tag (``&tag=`` on its
    path) and `Sizes.slow` slow ones, until every stalled one is evicted or none can
    be in time any more (`still_due`; at most `FILL_CAP_S` plus the bound and
    `SLACK_S`); `mid`: the server's figures before it. The client's garbage collector
    is off meanwhile (`client_gc_paused`)."""
    with client_gc_paused():
        return await _run_beside(server, path, sizes, tags, mid)


async def _run_beside(
    server: Server, path: str, sizes: Sizes, tags: list[str], mid: dict[str, Any]
) -> Beside:
    beside = Latencies()
    stop, tasks = await run_healthy(server, path, sizes, beside)
    monitor = Monitor(server)
    connected = time.perf_counter()
    stuck = [await stalled(server.port, f"{path}&tag={tag}") for tag in tags]
    slow_stop = asyncio.Event()
    slow_tasks = [
        asyncio.create_task(slow(server.port, path, slow_stop)) for _ in range(sizes.slow)
    ]
    expected = mid["started"] + sizes.healthy + sizes.stalled + sizes.slow
    figures = mid
    while figures["started"] < expected and time.perf_counter() < connected + SETUP_S:
        figures = await monitor.next()
    started_all = time.perf_counter()
    overdue_s = sizes.write_timeout + sizes.heartbeat + SLACK_S
    deadline = started_all + FILL_CAP_S + overdue_s
    if not tags:
        # The slow clients only (``--readers-mix slow``): a window as long as the
        # stalled clients' (write timeout and heartbeat), once the slow ones' first
        # writes have blocked (`FILL_S`).
        deadline = started_all + FILL_S + sizes.write_timeout + sizes.heartbeat
    while time.perf_counter() < deadline:
        figures = await monitor.next()
        if tags and not still_due(figures, tags, overdue_s):
            break
    times = [figures["evictions"][tag] for tag in tags if tag in figures["evictions"]]
    if not tags:
        beside.since, first_eviction = started_all + FILL_S, float("inf")
        beside.until = deadline
    elif len(times) == len(tags):
        # every stalled client has stalled (its last chunk was handed over) until the
        # last one is evicted: what the stalled clients cost the healthy ones
        beside.since = max(handed for handed, _ in times)
        first_eviction = min(end for _, end in times)
        beside.until = max(end for _, end in times)
    else:
        beside.since, first_eviction = started_all + FILL_S, float("inf")
        beside.until = time.perf_counter()
    result = Beside(
        latencies=beside,
        connected=connected,
        first_eviction=first_eviction,
        evictions=[end - handed for handed, end in times],
        slow_gone=max(0, figures["finalized"] - mid["finalized"] - len(times)),
        cpu_stalled=monitor.cpu(beside.since, first_eviction),
        peak_rss_kb=monitor.peak_rss(),
        gc=monitor.gc(beside.since, beside.until),
        gc_pauses=[
            (round(at - connected, 3), gen, round(ms, 2))
            for at, gen, ms in figures["gc"]["recent"]
            if at >= connected
        ],
    )
    await monitor.stop()
    stop.set()
    slow_stop.set()
    await asyncio.gather(*tasks, *slow_tasks, return_exceptions=True)
    for sock in stuck:
        reset(sock)
    return result
