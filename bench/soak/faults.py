"""Faults inside the pipeline: what the client sees, what the log says, what is left.

Each case runs on a fresh view of the server's log; after it, the server must settle
(every source finalized, tasks and descriptors back to what they were before the
case). Cases, with what streamfx promises:

- the source raises after 3 events: the client gets them, then the connection is
  aborted (no clean end: a truncated body never looks complete); the error is logged;
- the source hangs: the client gets heartbeats; when it leaves, the source is
  finalized; nothing is logged at ERROR;
- the source yields an item JSON cannot encode (after 2 events): the events before it
  (but those batched in the same chunk), then an abort and the ``TypeError`` in the log;
- a metrics hook raises in ``stream_opened``, ``items_sent`` or (on an export)
  ``stream_closed``: the stream goes on as if nothing happened (twice, complete), and
  the hook's error is logged once, not per stream or item;
- a finalizer raises when the client leaves: logged at ERROR with the stream's kind and
  name; when the stream ends by itself: all events, then an abort (the finalizer's
  error is the stream's), logged;
- a slow finalizer (2 s) when the client leaves: the server answers meanwhile, and the
  finalizer completes.

The peers get the first three cases (their view is shown; no check counts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.soak.client import Client, fetch
from bench.soak.common import back_to, settle, steady
from bench.soak.config import Sizes
from bench.soak.report import Table
from bench.soak.targets import Server, Target, error_lines

CLOSE = {"Connection": "close"}


@dataclass
class Seen:
    """What one client saw."""

    status: int
    events: list[str]
    pings: int
    ending: str

    def show(self) -> str:
        data = [event for event in self.events if event != "hello"]
        hello = "hello+" if "hello" in self.events else ""
        pings = f" {self.pings} pings" if self.pings else ""
        return f"{self.status} {hello}{len(data)}{pings} {self.ending}"


async def watch(
    port: int, path: str, leave_after: float | None = None, leave_at_pings: int | None = None
) -> Seen:
    """Read `path` until it ends, or leave (reset) after `leave_after` seconds or once
    `leave_at_pings` heartbeats arrived. The request asks the server to close the
    connection after the response (see `bench.soak.client.fetch`: hypercorn keeps a
    finished kept-alive connection, reset or not, until its keep-alive timeout)."""
    client = await Client.get(port, path, headers=CLOSE)
    events: list[str] = []
    pings = 0
    deadline = None if leave_after is None else time.monotonic() + leave_after
    try:
        async with asyncio.timeout(15):
            await client.head()
            while client.ending == "open":
                late = deadline is not None and time.monotonic() > deadline
                if late or (leave_at_pings is not None and pings >= leave_at_pings):
                    client.abort()
                    return Seen(client.status, events, pings, "left")
                try:
                    async with asyncio.timeout(0.1):
                        data = await client.chunk()
                except TimeoutError:
                    continue
                if data is None:
                    break
                pings += data.count(b": ping")
                events += [event.data or "" for event in client.decoder.feed(data)]
    finally:
        client.abort()
    return Seen(client.status, events, pings, client.ending)


async def export_rows(port: int) -> Seen:
    client = await Client.get(port, "/export?n=100", headers=CLOSE)
    try:
        async with asyncio.timeout(15):
            status = await client.head()
            body = await client.body()
    finally:
        client.abort()
    return Seen(status, [line.decode() for line in body.splitlines()], 0, client.ending)


@dataclass
class Outcome:
    seen: str
    seen_ok: bool
    log_ok: bool
    log: str


Case = Callable[[Server], Awaitable[Outcome]]


def log_summary(lines: list[str]) -> str:
    errors = error_lines(lines)
    if not errors:
        return "no ERROR"
    first = errors[0]
    for marker in ("[ERROR] ", "ERROR:", "ERROR "):
        if marker in first:
            first = first.split(marker, 1)[1]
            break
    first = first.strip()[:60]
    return f"{len(errors)} ERROR: {first}"


def mentions(lines: list[str], *words: str) -> bool:
    text = "\n".join(lines)
    return all(word in text for word in words)


def own_sources_finalized(before: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """The condition "every source started since `before` is finalized": what a case
    waits for before it reads the log (a peer that never finalized a source of an
    earlier scenario would otherwise keep every case waiting out its patience; the
    "no leak" check after the case stays absolute)."""
    unfinalized = before["started"] - before["finalized"]
    return lambda figures: figures["started"] - figures["finalized"] <= unfinalized


async def source_raises(server: Server) -> Outcome:
    before = await server.stats()
    seen = await watch(server.port, "/sse?gap=0.01&n=10&fault=raise")
    await settle(server, own_sources_finalized(before), 5)
    lines = server.log_since()
    return Outcome(
        seen.show(),
        seen.events == ["hello", *seen.events[1:4]]
        and len(seen.events) == 4
        and seen.ending in ("aborted", "reset"),
        bool(error_lines(lines)) and mentions(lines, "RuntimeError"),
        log_summary(lines),
    )


async def source_hangs(server: Server) -> Outcome:
    # leaves at the second heartbeat (or after 2 s without it: the check fails)
    seen = await watch(server.port, "/sse?mode=hang&hb=0.2", leave_after=2.0, leave_at_pings=2)
    lines = server.log_since()
    return Outcome(
        seen.show(),
        seen.events == ["hello"] and seen.pings >= 2,
        not error_lines(lines),
        log_summary(lines),
    )


async def unserializable(server: Server) -> Outcome:
    before = await server.stats()
    seen = await watch(server.port, "/sse?gap=0.01&n=10&fault=unserializable")
    await settle(server, own_sources_finalized(before), 5)
    lines = server.log_since()
    # the events batched in the same chunk before it are not sent (sse()'s promise)
    return Outcome(
        seen.show(),
        1 <= len(seen.events) <= 3 and seen.ending in ("aborted", "reset"),
        bool(error_lines(lines)) and mentions(lines, "TypeError"),
        log_summary(lines),
    )


def raising_hook(method: str) -> Case:
    async def case(server: Server) -> Outcome:
        await fetch(server.port, f"/hook?mode={method}")
        try:
            if method == "stream_closed":
                views = [await export_rows(server.port) for _ in range(2)]
                complete = all(v.status == 200 and len(v.events) == 100 for v in views)
            else:
                views = [await watch(server.port, "/sse?gap=0.01&n=3") for _ in range(2)]
                complete = all(v.status == 200 and len(v.events) == 4 for v in views)
            complete = complete and all(v.ending == "clean" for v in views)
        finally:
            await fetch(server.port, "/hook?mode=none")
        await settle(server, lambda s: s["finalized"] == s["started"], 5)
        lines = server.log_since()
        return Outcome(
            " / ".join(v.show() for v in views),
            complete,
            len(error_lines(lines)) == 1 and mentions(lines, method),
            log_summary(lines),
        )

    return case


async def log_until(
    server: Server, wanted: Callable[[list[str]], bool], seconds: float
) -> list[str]:
    """The log lines since the last look, read again until `wanted(lines)` holds or
    `seconds` pass: a record written just after what the case waited for (Django closes
    a body from another task, after the finalizer ran) still counts."""
    lines = server.log_since()
    deadline = time.monotonic() + seconds
    while not wanted(lines) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        lines += server.log_since()
    return lines


async def finalizer_raises_on_leave(server: Server) -> Outcome:
    before = (await server.stats())["finalizers_run"]
    seen = await watch(server.port, "/sse?gap=0.05&fault=finalizer-raise", leave_after=0.3)
    _, ran = await settle(server, lambda s: s["finalizers_run"] > before, 5)
    lines = await log_until(server, lambda lines: bool(error_lines(lines)), 3)
    return Outcome(
        seen.show() + ("" if ran else ", finalizer never ran"),
        ran,
        bool(error_lines(lines)) and mentions(lines, "sse", "soak", "finalizer"),
        log_summary(lines),
    )


async def finalizer_raises_at_end(server: Server) -> Outcome:
    seen = await watch(server.port, "/sse?gap=0.01&n=3&fault=finalizer-raise")
    await settle(server, lambda s: s["finalized"] == s["started"], 5)
    lines = server.log_since()
    return Outcome(
        seen.show(),
        len(seen.events) == 4 and seen.ending in ("aborted", "reset"),
        bool(error_lines(lines)) and mentions(lines, "finalizer"),
        log_summary(lines),
    )


async def slow_finalizer(server: Server) -> Outcome:
    before = (await server.stats())["finalizers_run"]
    seen = await watch(server.port, "/sse?gap=0.05&fault=finalizer-slow", leave_after=0.3)
    started = time.perf_counter()
    status, _ = await fetch(server.port, "/ping")
    answered_ms = (time.perf_counter() - started) * 1000
    _, ran = await settle(server, lambda s: s["finalizers_run"] > before, 10)
    lines = server.log_since()
    return Outcome(
        f"{seen.show()}; ping {answered_ms:.0f} ms while it ran",
        ran and status == 200 and answered_ms < 500,
        not error_lines(lines),
        log_summary(lines),
    )


CASES: list[tuple[str, Case, bool]] = [  # name, case, peers too
    ("source raises after 3", source_raises, True),
    ("source hangs, client leaves", source_hangs, True),
    ("unserializable 3rd item", unserializable, True),
    ("hook raises: stream_opened", raising_hook("stream_opened"), False),
    ("hook raises: items_sent", raising_hook("items_sent"), False),
    ("hook raises: stream_closed (export)", raising_hook("stream_closed"), False),
    ("finalizer raises, client leaves", finalizer_raises_on_leave, False),
    ("finalizer raises, stream ends", finalizer_raises_at_end, False),
    ("slow finalizer, client leaves", slow_finalizer, False),
]


def table(sizes: Sizes) -> Table:
    return Table(
        "faults",
        "faults: a failing source, metrics hook or finalizer (see bench/soak/faults.py)",
        ["case", "server", "client sees", "log", "leak"],
        notes=[
            "client sees: status, events (hello+N), heartbeats, how the body ended (clean:",
            "the last chunk; aborted/reset: no clean end; left: the client went away).",
            "leak: every source finalized and tasks and fds back to before the case.",
        ],
    )


async def measure(target: Target, server: Server, sizes: Sizes, table: Table) -> None:
    await watch(server.port, "/sse?n=1&gap=0.01")  # warm-up (WSGI: its loop starts)
    for name, case, peers_too in CASES:
        if target.peer and not peers_too:
            continue
        base = await steady(server)
        outcome = await case(server)

        after, settled = await settle(server, back_to(base), 10)
        row = f"{name} / {target.name}"
        peer = target.peer
        table.add(
            [
                name,
                target.name,
                table.check(row, "what the client sees", outcome.seen_ok, outcome.seen, peer=peer),
                table.check(row, "the log", outcome.log_ok, outcome.log, peer=peer),
                table.check(
                    row,
                    "no leak",
                    settled,
                    f"{after['finalized']}/{after['started']}, tasks "
                    f"{base['tasks']}->{after['tasks']}, fds {base['fds']}->{after['fds']}",
                    peer=peer,
                ),
            ]
        )
        server.log_since()
