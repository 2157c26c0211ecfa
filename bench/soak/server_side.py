"""What every soak server shares: the request's parameters, the sources, the counters,
the metrics hooks that raise, and the ``/stats`` figures.

Each app module (`app_asgi`, `app_aiohttp`, `app_quart`, `app_django`, `app_wsgi`)
routes the same paths to its framework's way of sending the same sources:

- ``GET /sse?...``: an SSE stream of `source` (query parameters: `Params`); with
  ``policy=hub-sliding`` or ``policy=hub-disconnect``, a subscription to the shared
  `Ticker`'s `streamfx.broadcast.Broadcast` hub instead (`streamfx_hub`);
- ``GET /export?n=N&fault=...``: an NDJSON export of N rows (streamfx only);
- ``GET /ping``: a tiny plain response (the server still answers);
- ``GET /stats``: `stats` as JSON;
- ``GET /hook?mode=...``: install a metrics hook that raises in one method
  (``none`` puts the silent default back, ``record`` the `Recorder`; streamfx only).

The peers (sse-starlette, aiohttp-sse) serve ``/sse`` with their own response and the
same `source`; what they do not support answers 404, which the tables show as "n/a".

Every source counts itself in `COUNTS`: ``started`` when it begins, ``finalized`` in
its ``finally``. So "finalizers == cycles" is read from the server, not guessed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import streamfx
from streamfx.broadcast import Broadcast
from streamfx.metrics import NullMetrics, Outcome, set_metrics

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_logging() -> None:
    """INFO and above to stderr, one line per record starting with its level (the
    driver counts ``ERROR`` lines per case)."""
    root = logging.getLogger()
    if not any(getattr(handler, "_soak", False) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._soak = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)


@dataclass(frozen=True, slots=True)
class Params:
    """One ``/sse`` request's shape, from its query string."""

    mode: str = "ticks"  # ticks | idle | hang
    n: int = -1  # events after "hello" (-1: endless)
    gap: float = 0.05  # seconds between the shared ticker's ticks (0: no waiting)
    size: int = 0  # padding per event, in bytes
    hello: bool = True  # yield "hello" at once
    heartbeat: float = 15.0
    write_timeout: float = 60.0
    policy: str = "sliding"  # a BufferPolicy strategy, or hub-<overflow> (`streamfx_hub`)
    capacity: int = 64
    fault: str = ""  # raise | unserializable | finalizer-raise | finalizer-slow
    farewell: bool = False
    tag: str = ""  # timed by `HANDOVERS` (the readers scenario's stalled clients)
    # ``sa=``: `BufferPolicy.stall_after` in seconds, ``none`` for never; absent: the
    # policy's default (the readers scenario's attribution: ``--stall-after``)
    stall_after: float | str | None = "default"

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Params:
        return cls(
            mode=query.get("mode", "ticks"),
            n=int(query.get("n", "-1")),
            gap=float(query.get("gap", "0.05")),
            size=int(query.get("size", "0")),
            hello=query.get("hello", "1") == "1",
            heartbeat=float(query.get("hb", "15")),
            write_timeout=float(query.get("wt", "60")),
            policy=query.get("policy", "sliding"),
            capacity=int(query.get("cap", "64")),
            fault=query.get("fault", ""),
            farewell=query.get("farewell", "0") == "1",
            tag=query.get("tag", ""),
            stall_after=_stall_after(query.get("sa", "")),
        )


def _stall_after(text: str) -> float | str | None:
    if text == "":
        return "default"
    return None if text == "none" else float(text)


class Counts:
    started = 0
    finalized = 0
    finalizers_run = 0  # the `ensuring` finalizers of the fault cases


COUNTS = Counts()


class Handovers:
    """For each tagged stream (``tag=`` in its query): when it last handed a chunk to
    the server, and when its source was finalized. The readers scenario times an
    eviction from the handover of the chunk that never left (the server's buffers
    for that client were full), which is the moment the write timeout counts from.

    The handover is streamfx's ``items_sent`` (the engine reports a chunk just before
    handing it to the adapter; `Recorder`, installed with ``/hook?mode=record``) or,
    for a peer, which iterates the source from its sending loop, the last time the
    source was resumed after a ``yield`` (the previous item had been sent; the next
    one is handed over within a tick).
    """

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}  # tag -> perf_counter of the last items_sent
        self.resumed: dict[str, float] = {}  # tag -> perf_counter of the last resume
        self.finalized: dict[str, float] = {}  # tag -> perf_counter of its finalization
        self.by_hook = False  # `Recorder` installed: the sources need not time themselves

    def clear(self, by_hook: bool) -> None:
        self.sent.clear()
        self.resumed.clear()
        self.finalized.clear()
        self.by_hook = by_hook

    def evictions(self) -> dict[str, tuple[float, float]]:
        """Per finalized tag: (last handover, finalization), perf_counter seconds (the
        system-wide monotonic clock on Linux: the client can compare them with its
        own)."""
        finalized = dict(self.finalized)  # one C-level copy: safe beside another thread
        sent, resumed = dict(self.sent), dict(self.resumed)
        result = {}
        for tag, end in finalized.items():
            handed = sent.get(tag, resumed.get(tag))
            if handed is not None:
                result[tag] = (handed, end)
        return result

    def handed(self) -> dict[str, float]:
        """Per tag not yet finalized: its last handover (perf_counter seconds), for
        the readers scenario to tell a stream still filling its buffers from one
        stalled (and how long ago)."""
        finalized = dict(self.finalized)
        handed = {**self.resumed, **self.sent}  # one C-level copy each
        return {tag: at for tag, at in handed.items() if tag not in finalized}


HANDOVERS = Handovers()
LOOPS: set[asyncio.AbstractEventLoop] = set()  # every loop a source ran on


class Ticker:
    """One shared publisher per (gap, size): every `gap` seconds it builds one item
    (``"<seq> <publish perf_counter> <padding>"``) and every source waiting on it wakes
    and yields that same object (a publish to all subscribers at once: the per-stream
    cost is streamfx's, not the source's). The same item is published, once per tick,
    to each `Broadcast` hub asked for with `hub` (topic ``"ticks"``)."""

    def __init__(self, gap: float, size: int) -> None:
        self.gap = gap
        self.padding = "x" * size
        self.item = ""
        self.event = asyncio.Event()
        self.hubs: dict[tuple[str, int], Broadcast] = {}
        self.task = asyncio.get_running_loop().create_task(self._run(), name="soak ticker")

    async def _run(self) -> None:
        seq = 0
        while True:
            await asyncio.sleep(self.gap)
            seq += 1
            self.item = f"{seq} {time.perf_counter():.6f} {self.padding}"
            event, self.event = self.event, asyncio.Event()
            event.set()
            for hub in self.hubs.values():
                await hub.publish("ticks", self.item)  # in process: never suspends

    def hub(self, overflow: str, buffer: int) -> Broadcast:
        """The hub (made at the first call) that this ticker publishes each item to."""
        found = self.hubs.get((overflow, buffer))
        if found is None:
            found = self.hubs[overflow, buffer] = Broadcast(
                buffer=buffer,
                overflow=overflow,  # type: ignore[arg-type]
                history=buffer,
                name="soak",
            )
        return found

    async def next(self) -> str:
        await self.event.wait()
        return self.item


_tickers: dict[tuple[asyncio.AbstractEventLoop, float, int], Ticker] = {}


def ticker(gap: float, size: int) -> Ticker:
    loop = asyncio.get_running_loop()
    found = _tickers.get((loop, gap, size))
    if found is None:
        found = _tickers[loop, gap, size] = Ticker(gap, size)
    return found


class Unserializable:
    """An item JSON cannot encode."""


async def source(params: Params) -> AsyncIterator[Any]:
    """The soak's source: "hello", then one event per tick of the shared `Ticker`
    (``"<seq> <publish perf_counter> <padding>"``; with gap 0, as fast as the stream
    takes them), or nothing (idle, hang), with the requested fault; counted in
    `COUNTS`."""
    COUNTS.started += 1
    LOOPS.add(asyncio.get_running_loop())
    tag = params.tag
    try:
        if params.hello:
            yield "hello"
        if params.mode in ("idle", "hang"):
            await asyncio.get_running_loop().create_future()  # forever
        clock = ticker(params.gap, params.size) if params.gap > 0 else None
        padding = "x" * params.size
        index = 0
        while params.n < 0 or index < params.n:
            if params.fault == "raise" and index == 3:
                raise RuntimeError("soak: the source failed on purpose")
            if params.fault == "unserializable" and index == 2:
                yield Unserializable()
            if clock is not None:
                yield await clock.next()
            else:
                await asyncio.sleep(0)
                yield f"{index} {time.perf_counter():.6f} {padding}"
            if tag and not HANDOVERS.by_hook:
                HANDOVERS.resumed[tag] = time.perf_counter()
            index += 1
    finally:
        if tag:
            HANDOVERS.finalized[tag] = time.perf_counter()
        COUNTS.finalized += 1


def with_fault_finalizer(items: AsyncIterator[Any], params: Params) -> AsyncIterator[Any]:
    """`items` behind `streamfx.ensuring` with the finalizer the fault asks for."""
    if params.fault == "finalizer-raise":

        def failing() -> None:
            COUNTS.finalizers_run += 1
            raise RuntimeError("soak: the finalizer failed on purpose")

        return streamfx.ensuring(items, failing)
    if params.fault == "finalizer-slow":

        async def slow() -> None:
            await asyncio.sleep(2.0)
            COUNTS.finalizers_run += 1

        return streamfx.ensuring(items, slow)
    return items


SSE_HEADERS = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
]


async def hub_subscription(params: Params) -> AsyncIterator[bytes]:
    """A subscription to the ticker's hub (``policy=hub-<overflow>``, buffer
    `Params.capacity`), counted in `COUNTS` like `source`; tagged streams are timed by
    the `Recorder` (each write's ``items_sent``) and here (the finalization)."""
    COUNTS.started += 1
    LOOPS.add(asyncio.get_running_loop())
    try:
        hub = ticker(params.gap, params.size).hub(params.policy[4:], params.capacity)
        name = f"soak {params.tag}" if params.tag else "soak"
        body = hub.subscribe("ticks", heartbeat=params.heartbeat, name=name)
        try:
            async for chunk in body:
                yield chunk
        finally:
            await body.aclose()  # type: ignore[attr-defined]
    finally:
        if params.tag:
            HANDOVERS.finalized[params.tag] = time.perf_counter()
        COUNTS.finalized += 1


def streamfx_hub(params: Params) -> streamfx.StreamResponse:
    """A subscription to the shared ticker's `Broadcast` hub: one publish per tick
    for every subscriber; a stalled one is a cursor, woken by nothing."""
    return streamfx.StreamResponse(200, list(SSE_HEADERS), hub_subscription(params))


def streamfx_sse(params: Params) -> streamfx.StreamResponse:
    """The streamfx response for `params` (a hub's subscription for ``hub-*``)."""
    if params.policy.startswith("hub-"):
        return streamfx_hub(params)
    farewell = streamfx.ServerSentEvent("bye", event="farewell") if params.farewell else None
    strategy: Any = params.policy
    if params.stall_after == "default":
        policy = streamfx.BufferPolicy(params.capacity, strategy)
    else:
        policy = streamfx.BufferPolicy(params.capacity, strategy, params.stall_after)  # type: ignore[arg-type]
    return streamfx.sse(
        with_fault_finalizer(source(params), params),
        heartbeat=params.heartbeat,
        buffer=policy,
        name=f"soak {params.tag}" if params.tag else "soak",
        farewell=farewell,
    )


async def rows(n: int) -> AsyncIterator[dict[str, int]]:
    COUNTS.started += 1
    try:
        for index in range(n):
            yield {"row": index}
    finally:
        COUNTS.finalized += 1


def streamfx_export(query: Mapping[str, str]) -> streamfx.StreamResponse:
    return streamfx.export(rows(int(query.get("n", "100"))), "ndjson", name="soak")


class Recorder(NullMetrics):
    """Records in `HANDOVERS` when each tagged stream (named ``soak <tag>``) hands a
    chunk to the server."""

    def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None:
        if name.startswith("soak "):
            HANDOVERS.sent[name[5:]] = time.perf_counter()


class RaisingHook(NullMetrics):
    """A metrics hook that raises in one of its methods."""

    def __init__(self, method: str) -> None:
        self.method = method

    def _maybe_raise(self, method: str) -> None:
        if method == self.method:
            raise RuntimeError(f"soak: metrics hook {method} failed on purpose")

    def stream_opened(self, kind: str, name: str) -> None:
        self._maybe_raise("stream_opened")

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        self._maybe_raise("stream_closed")

    def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None:
        self._maybe_raise("items_sent")

    def items_dropped(self, kind: str, name: str, items: int) -> None:
        self._maybe_raise("items_dropped")


def install_hook(mode: str) -> None:
    """``none``: the silent default; ``record``: `Recorder`; else a hook raising in the
    method named `mode`."""
    HANDOVERS.by_hook = False
    if mode in ("", "none"):
        set_metrics(NullMetrics())
    elif mode == "record":
        HANDOVERS.clear(by_hook=True)
        set_metrics(Recorder())
    else:
        set_metrics(RaisingHook(mode))


class GCPauses:
    """The cyclic garbage collector's pauses in this process (`gc.callbacks`): count,
    total and longest, per generation; a long pause stalls every stream at once."""

    def __init__(self) -> None:
        self.started = 0.0
        self.cpu_started = 0.0
        self.cpu_ms = 0.0  # CPU time spent collecting (the pauses are wall time)
        self.count = [0, 0, 0]
        self.total_ms = [0.0, 0.0, 0.0]
        self.longest_ms = [0.0, 0.0, 0.0]
        self.recent: deque[tuple[float, int, float]] = deque(maxlen=200)  # (at, gen, ms)
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            self.cpu_started = time.thread_time()
            return
        generation = info["generation"]
        pause = (time.perf_counter() - self.started) * 1000
        self.cpu_ms += (time.thread_time() - self.cpu_started) * 1000
        self.count[generation] += 1
        self.total_ms[generation] += pause
        self.longest_ms[generation] = max(self.longest_ms[generation], pause)
        self.recent.append((self.started, generation, pause))

    def figures(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "total_ms": self.total_ms,
            "longest_ms": self.longest_ms,
            "cpu_ms": self.cpu_ms,
            "recent": list(self.recent),
        }


GC_PAUSES = GCPauses()


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def stats(tasks: Callable[[], int]) -> dict[str, Any]:
    """This server process's figures: CPU seconds used, RSS (KB), descriptors, threads,
    live tasks (by `tasks`, in the server's loop), sources started and finalized."""
    times = os.times()
    return {
        "pid": os.getpid(),
        "cpu_s": times.user + times.system,
        "rss_kb": _proc_status("VmRSS"),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "tasks": tasks(),
        "started": COUNTS.started,
        "finalized": COUNTS.finalized,
        "finalizers_run": COUNTS.finalizers_run,
        "evictions": HANDOVERS.evictions(),
        "handed": HANDOVERS.handed(),
        "gc": GC_PAUSES.figures(),
    }


def tasks_on(loop: asyncio.AbstractEventLoop) -> int:
    """Live tasks on `loop`, counted from any thread (on the loop itself when it is
    another thread's), soak tickers excluded."""

    def count() -> int:
        return sum(1 for task in asyncio.all_tasks(loop) if task.get_name() != "soak ticker")

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return count()

    async def counted() -> int:
        return count()

    return asyncio.run_coroutine_threadsafe(counted(), loop).result(5)


def background_tasks() -> int:
    """Live tasks on the loops sources ran on that are not the caller's (the WSGI
    adapter's background loop)."""
    return sum(tasks_on(loop) for loop in list(LOOPS) if not loop.is_closed())
