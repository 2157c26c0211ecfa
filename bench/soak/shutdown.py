"""Shutdown: SIGTERM to a server with many open SSE streams.

Every stream is ``sse(..., farewell=ServerSentEvent("bye", event="farewell"))``, an
event every 0.5 s, each client past its first event when the signal is sent. Checks:
every client gets the farewell and a clean end of the body (the last chunk), and the
server exits within `PROMPT_S` (its graceful timeout is 10 s: a server that waits for
the streams to be cut by it is not prompt).
"""

from __future__ import annotations

import asyncio
import signal
import time

from bench.soak.client import Client
from bench.soak.common import gather_limited, settle
from bench.soak.config import Sizes
from bench.soak.report import Table
from bench.soak.targets import Server, Target

PATH = "/sse?gap=0.5&farewell=1&hb=15"
PROMPT_S = 5.0


async def open_stream(port: int) -> Client:
    client = await Client.get(port, PATH)
    async with asyncio.timeout(30):
        while client.ending == "open":
            if any(event.data == "hello" for event in await client.events()):
                return client
    raise RuntimeError(f"the stream ended ({client.ending}) before its first event")


async def follow(client: Client) -> tuple[bool, str]:
    """Read to the end: (got the farewell, how it ended)."""
    farewell = False
    try:
        async with asyncio.timeout(30):
            while client.ending == "open":
                for event in await client.events():
                    farewell = farewell or event.event == "farewell"
    except TimeoutError:
        return farewell, "open"
    finally:
        client.abort()
    return farewell, client.ending


def table(sizes: Sizes) -> Table:
    n = sizes.shutdown_streams
    return Table(
        "shutdown",
        f"shutdown: SIGTERM with {n} open SSE streams (farewell event, graceful timeout 10 s)",
        ["server", "farewells", "clean ends", "ends", "exit s", "exit code"],
        notes=[
            "ends: how the other bodies ended (aborted: EOF before the last chunk; reset).",
            f"exit: seconds from SIGTERM to the process's exit (check: <= {PROMPT_S:.0f} s); a",
            f"peer still running {PROMPT_S + 1:g} s after it is killed then (shown as "
            f">{PROMPT_S + 1:g}).",
        ],
    )


async def measure(target: Target, server: Server, sizes: Sizes, table: Table) -> None:
    n = sizes.shutdown_streams
    before = (await server.stats())["started"]  # the server may have served other scenarios
    clients = await gather_limited([lambda: open_stream(server.port)] * n, 100)
    await settle(server, lambda s: s["started"] >= before + n, 10)
    followers = [asyncio.create_task(follow(client)) for client in clients]
    signalled = time.perf_counter()
    server.signal(signal.SIGTERM)
    # A streamfx server gets 30 s (a hang is shown as one). A peer's check is decided
    # once `PROMPT_S` has passed: it is killed a second later, its exit shown as ">6"
    # (aiohttp-sse waited out its 20 s of graceful shutdown: 17 s of the run).
    patience = 30.0 if target.counted else PROMPT_S + 1.0
    exited = await server.wait_exit(patience)
    exit_s = time.perf_counter() - signalled
    if not exited and not target.counted:
        server.kill()
    results = await asyncio.gather(*followers)
    farewells = sum(1 for farewell, _ in results if farewell)
    endings: dict[str, int] = {}
    for _, ending in results:
        endings[ending] = endings.get(ending, 0) + 1
    clean = endings.pop("clean", 0)
    name = target.name
    check = table.checker(name, peer=not target.counted)
    table.add(
        [
            name,
            check("every farewell", farewells == n, f"{farewells}/{n}"),
            check("every end clean", clean == n, f"{clean}/{n}"),
            ", ".join(f"{count} {ending}" for ending, count in endings.items()) or "-",
            check(
                "prompt exit",
                exited and exit_s <= PROMPT_S,
                f"{exit_s:.1f}" if exited else ("hung" if target.counted else f">{patience:g}"),
            ),
            str(server.exit_code),
        ],
        {"server": name, "farewells": farewells, "clean": clean, "exit_s": exit_s},
    )
