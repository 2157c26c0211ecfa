"""Run the soak: ``python -m bench.soak [--quick] [--only churn,idle,...] [--targets a,b]
[--fuzz-seconds S] [--readers-more] [--references]``.

``SOAK_QUICK=1`` (or ``--quick``) runs the short version. Each server is started once
and serves churn, idle, readers, faults and shutdown in that order (every scenario
compares with its own baseline; shutdown, last, stops the server: a server that has
served the other scenarios must still say every farewell). Every server process is
launched at the start, together: their start-up (imports) is over before anything is
measured. Churn, idle and readers measure time and CPU, so they run on one server at
a time, one server after another. Faults then runs on every server at once: its
cases wait on sleeps, heartbeats and a 2 s finalizer, each server's checks read that
server's own figures and log, and its one timed check (a ping answered within 500 ms
while a slow finalizer runs) has a margin of hundreds of ms; one server after another,
the short run spent 28 s there, mostly waiting. Shutdown, last, is one server at a
time again (its check is how promptly the server exits). The tables go to stdout
and, as JSON, to ``bench-results/soak/results.json``; the servers' logs to
``bench-results/soak/*.log``; the seconds each server spent in each scenario to stderr
as it goes. Exit status 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Awaitable, Callable
from types import ModuleType

from bench.soak import churn, faults, fuzz, idle, readers, shutdown
from bench.soak.config import Sizes, sizes
from bench.soak.report import Table, print_table, save
from bench.soak.targets import LOGS, TARGETS, Server, Target

Measure = Callable[[Target, Server, Sizes, Table], Awaitable[None]]
ONE_AT_A_TIME: dict[str, ModuleType] = {"churn": churn, "idle": idle, "readers": readers}
SCENARIOS = [*ONE_AT_A_TIME, "faults", "shutdown", "fuzz"]


def threads_needed(chosen: Sizes) -> int:
    """Server threads a thread-per-request (WSGI) server needs for every scenario."""
    readers_total = chosen.healthy + chosen.stalled + chosen.slow
    return 50 + max(
        8 * chosen.churn_concurrency,
        chosen.idle_streams_threaded,
        readers_total,
        chosen.shutdown_streams,
    )


def report(target: Target, started: float, here: dict[str, float], what: str = "done") -> None:
    parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in here.items())
    print(
        f"  {target.name}: {what} at {time.monotonic() - started:.0f} s ({parts or 'skipped'})",
        file=sys.stderr,
        flush=True,
    )


async def faults_everywhere(
    running: list[tuple[Target, Server]], chosen: Sizes, table: Table, started: float
) -> None:
    """The faults scenario on every server at once, each into a table of its own; the
    rows gathered in the servers' order."""
    tables = [faults.table(chosen) for _ in running]

    async def one(target: Target, server: Server, own: Table) -> None:
        began = time.monotonic()
        await faults.measure(target, server, chosen, own)
        server.log_since()
        report(target, started, {"faults": time.monotonic() - began}, "faults done")

    async with asyncio.TaskGroup() as group:
        for (target, server), own in zip(running, tables, strict=True):
            group.create_task(one(target, server, own))
    for own in tables:
        table.extend(own)


async def main(names: list[str], targets: list[Target], chosen: Sizes) -> int:
    started = time.monotonic()
    modules = {**ONE_AT_A_TIME, "faults": faults, "shutdown": shutdown, "fuzz": fuzz}
    tables = {name: modules[name].table(chosen) for name in names}
    spent = dict.fromkeys(names, 0.0)
    threads = threads_needed(chosen)
    plans = [
        (target, [name for name in names if target.only is None or name in target.only])
        for target in targets
    ]
    plans = [(target, taken) for target, taken in plans if set(taken) - {"fuzz"}]
    async with contextlib.AsyncExitStack() as stack:
        servers = []
        for target, _ in plans:  # every process starts now; each is awaited in its turn
            server = Server(target, threads=threads, tag="soak")
            stack.push_async_exit(server)
            servers.append(server)
        running: list[tuple[Target, Server, list[str]]] = []
        for (target, taken), server in zip(plans, servers, strict=True):
            began = time.monotonic()
            await server.__aenter__()
            here = {"start": time.monotonic() - began}
            for name in (name for name in taken if name in ONE_AT_A_TIME):
                began = time.monotonic()
                measure: Measure = ONE_AT_A_TIME[name].measure
                await measure(target, server, chosen, tables[name])
                here[name] = time.monotonic() - began
                spent[name] += here[name]
                server.log_since()
            report(target, started, here)
            if {"faults", "shutdown"} & set(taken):
                running.append((target, server, taken))
            else:
                await server.stop()
        if "faults" in names:
            began = time.monotonic()
            here_all = [(t, s) for t, s, taken in running if "faults" in taken]
            await faults_everywhere(here_all, chosen, tables["faults"], started)
            spent["faults"] = time.monotonic() - began
        for target, server, taken in running:
            if "shutdown" in taken:  # last: it stops the server
                began = time.monotonic()
                await shutdown.measure(target, server, chosen, tables["shutdown"])
                spent["shutdown"] += time.monotonic() - began
                report(target, started, {"shutdown": time.monotonic() - began})
            await server.stop()
    if "fuzz" in names:
        began = time.monotonic()
        await fuzz.measure_all(chosen, tables["fuzz"])
        spent["fuzz"] += time.monotonic() - began
    for name in names:
        tables[name].notes.append(f"({spent[name]:.0f} s)")
        print_table(tables[name])
    save(list(tables.values()), LOGS / "results.json")
    failures = [failure for table in tables.values() for failure in table.failures]
    print(f"\nsoak finished in {time.monotonic() - started:.0f} s; logs in {LOGS}")
    if failures:
        print(f"{len(failures)} check(s) failed:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print("every check passed")
    return 0


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--targets", default="", help="servers whose name contains one of these")
    parser.add_argument("--quick", action="store_true", help="the short run (as SOAK_QUICK=1)")
    parser.add_argument(
        "--references",
        action="store_true",
        help="also the reference rows (waitress under its defaults: readers only)",
    )
    parser.add_argument(
        "--readers-more",
        action="store_true",
        help="readers: the comparison rows too, on uvicorn and aiohttp: suspend buffers, "
        "and a Broadcast hub with overflow 'disconnect'",
    )
    parser.add_argument(
        "--readers-mix",
        choices=("both", "stalled", "slow"),
        default="both",
        help="readers, to attribute a cost: run B with only the stalled or only the slow "
        "clients beside the healthy ones (default both)",
    )
    parser.add_argument(
        "--stall-after",
        default="",
        help="readers: the sources' BufferPolicy stall_after in seconds, or 'none' "
        "(default: the policy's)",
    )
    parser.add_argument(
        "--readers-policies",
        default="",
        help="readers: only these rows' policies, comma-separated (sliding, suspend, "
        "hub-sliding, hub-disconnect; default: the usual rows)",
    )
    parser.add_argument(
        "--fuzz-seconds",
        type=float,
        default=None,
        help="seconds of fuzzing per parser (a long run: e.g. 60; default: the size's)",
    )
    args = parser.parse_args()
    if args.quick:
        os.environ["SOAK_QUICK"] = "1"
    names = [name for name in SCENARIOS if name in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(SCENARIOS) - {""}
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
    wanted = [part.strip() for part in args.targets.split(",") if part.strip()]
    targets = [t for t in TARGETS if not wanted or any(w in t.name for w in wanted)]
    if not (wanted or args.references):
        # A reference row (streamfx under settings the README advises against) is
        # shown to say why, and counts for nothing: named with --targets or
        # --references (waitress's defaults: a server start and 22 s of readers).
        targets = [t for t in targets if t.kind != "reference"]
    chosen = sizes()
    if args.readers_more:
        chosen = dataclasses.replace(chosen, readers_more=True)
    chosen = dataclasses.replace(
        chosen,
        readers_mix=args.readers_mix,
        readers_stall_after=args.stall_after,
        readers_policies=args.readers_policies,
    )
    if args.readers_mix == "stalled":
        chosen = dataclasses.replace(chosen, slow=0)
    elif args.readers_mix == "slow":
        chosen = dataclasses.replace(chosen, stalled=0)
    if args.fuzz_seconds is not None:
        if args.fuzz_seconds <= 0:
            parser.error("--fuzz-seconds must be positive")
        chosen = dataclasses.replace(chosen, fuzz_seconds=args.fuzz_seconds)
    mode = "quick" if chosen.churn_cycles < 1000 else "full"
    if mode == "quick" and not wanted:
        # The short run checks streamfx's adapters only (it is CI's); the peers are
        # compared in the full run.
        targets = [t for t in targets if not t.peer]
    print(f"streamfx soak ({mode}): {', '.join(names)} against {len(targets)} servers", flush=True)
    sys.exit(asyncio.run(main(names, targets, chosen)))


if __name__ == "__main__":
    cli()
