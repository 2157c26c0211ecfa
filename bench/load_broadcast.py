"""Broadcast load test, one uvicorn worker, side by side with the peers in one run.

Each scenario starts a fresh server (`bench.broadcast_apps`, uvicorn with uvloop and
httptools) per contender, connects raw-socket subscribers from this process
(`bench._subscribers`) and starts the publisher on the server (event k due at
``t0 + (k - 1) / rate``; latency is arrival minus that due time, where arrival is when
the kernel received the data on the client's socket, not when the client got round to
reading it: see `bench._subscribers`):

- ``fanout``: SUBSCRIBERS subscribers; streamfx at increasing rates until a rate
  where it no longer keeps up (a subscriber ended, an event missing, or p99 above
  50 ms); then the peers and the floor at streamfx's best rate. Deliveries/s = events
  delivered / (last arrival - t0).
- ``idle``: IDLE subscribers that receive nothing: server RSS growth / IDLE (the hub
  included); then IDLE_RATE events/s to all of them, p50/p99.
- ``live``: SUBSCRIBERS subscribers, LIVE_RATE events/s: p50/p99, with sse-starlette's
  one-generator-per-client as the reference; then the floor at LIVE_RATE, and the
  floor and streamfx at LOW_RATE events/s.
- ``stalled``: SUBSCRIBERS subscribers of which STALLED never read (a 4 KB receive
  buffer), LIVE_RATE events/s of STALLED_SIZE bytes for STALLED_SECONDS: RSS growth,
  the healthy subscribers' p99 against the same run without stalled subscribers, and
  when the stalled ones were ended (streamfx's write timeout is WRITE_TIMEOUT here);
  a stalled connection is only seen as stalled once the kernel's buffers are full
  (``absorbed_bytes``), so the bound is that fill time + write timeout + heartbeat.

The floor (``raw``, `bench.broadcast_apps.RawFanout`) is a hand-written fan-out in
plain ASGI with nothing but the fan-out (no heartbeat, no write timeout, no overflow
handling): not a peer, but what one uvicorn worker and the kernel's TCP path cost on
this machine with no library at all. Every run records the server's user and system
CPU time (/proc/PID/stat) and its write system calls (``syscw`` in /proc/PID/io, about
one per subscriber woken), and so the CPU per write: with a thousand subscribers, one
publish costs at least a thousand of those, which bounds how soon the last subscriber
can have it. Beside them: the bytes per write (``wchar``) and how often the server was
preempted (``nonvoluntary_ctxt_switches``), because the CPU per write is not a constant
of the code on a shared two-core machine: the same streamfx code at the same rate
measured 10 to 22 us of user CPU per write from one trial to the next as other
processes came and went, while a write carrying more events costs little more (some
950 instructions per extra event on top of ~32,000, counted with callgrind).

Every run also reports the server's garbage collections that started in its measured
window (from ``t0`` to the last arrival), per generation: how many, their total and
longest time (``gc``; the server logs them with a `gc.callbacks` hook, the same for
every contender: see `bench.broadcast_apps`). A full collection (generation 2) stops
the server for tens of milliseconds with a thousand connections open, so it shows in
the p99 of a few seconds' run.

Each scenario records when it ran and the machine's load average before and after it
(``conditions``): the report quotes them beside the figures.

Run: ``.venv/bin/python -m bench.load_broadcast [--quick] [--json out.json]``; a full
run takes about ten minutes. ``--only idle live`` runs some scenarios; with ``--merge``
their results replace those scenarios in an existing ``--json`` file and keep the
others, so the scenarios can be run one at a time into one results file.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._subscribers import STALLED_RECEIVE_BUFFER, Subscribers, percentiles
from bench._uvicorn import (
    cpu_times,
    rss_bytes,
    run_uvicorn,
    start_server,
    wait_ready,
    write_calls,
)
from bench.broadcast_apps import build_app, raise_open_files

FULL = {
    "subscribers": 1000,
    "rates": [100, 200, 400, 800],
    "seconds": 4.0,
    "idle": 5000,
    "idle_rate": 20,
    "live_rate": 100,
    "low_rate": 10,
    "stalled": 100,
    "stalled_seconds": 60.0,
    "stalled_size": 4096,
    "write_timeout": 10.0,
    "drain": 10.0,
    "closure_wait": 10.0 + 15.0,
    "size": 64,
    "peers": ["sse-starlette", "broadcaster"],
    "live_contenders": ["streamfx", "sse-starlette", "sse-starlette-gen", "broadcaster"],
    "stalled_peers": ["sse-starlette"],
}
QUICK = {
    **FULL,
    "subscribers": 100,
    "rates": [400],
    "seconds": 1.0,
    "idle": 200,
    "stalled": 10,
    "stalled_seconds": 3.0,
    "write_timeout": 1.0,
    "drain": 2.0,
    "closure_wait": 2.0,
    # fewer servers to start: the quick run checks the scripts work, it is no comparison
    "peers": ["sse-starlette"],
    "live_contenders": ["streamfx", "sse-starlette-gen"],
    "stalled_peers": [],
}
P99_FLOOR_MS = 50.0
HEARTBEAT = 15.0  # the hub's default heartbeat


class Server:
    """A fresh uvicorn subprocess serving `bench.broadcast_apps` on a free port."""

    def __init__(self, write_timeout: float) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.process = start_server(
            "bench.load_broadcast", self.listener, "--write-timeout", str(write_timeout)
        )
        wait_ready(self.port)

    def call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    def cpu(self) -> tuple[float, float]:
        """User and system CPU seconds the server has used."""
        return cpu_times(self.process.pid)

    def writes(self) -> int:
        """Write system calls the server has made."""
        return write_calls(self.process.pid)

    def written_bytes(self) -> int:
        """Bytes the server has written (``wchar`` in /proc/PID/io)."""
        return proc_field(f"/proc/{self.process.pid}/io", "wchar:")

    def preemptions(self) -> int:
        """Times the server was taken off the CPU while it could still run
        (``nonvoluntary_ctxt_switches`` in /proc/PID/status): other processes' share."""
        return proc_field(f"/proc/{self.process.pid}/status", "nonvoluntary_ctxt_switches:")

    def close(self) -> None:
        """Stop the server: SIGTERM (2 s of graceful shutdown), then SIGKILL: the peers'
        streams never end by themselves, so uvicorn would wait for them forever."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.listener.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def broadcast_run(
    contender: str,
    subscribers: int,
    rate: float,
    seconds: float,
    p: dict[str, Any],
    *,
    stalled: int = 0,
    size: int | None = None,
) -> dict[str, Any]:
    """One run: connect, publish `rate` events/s for `seconds`, read, measure."""
    count = max(1, round(rate * seconds))
    with Server(p["write_timeout"]) as server:
        pool = Subscribers(server.port, f"/sub/{contender}", subscribers, stalled=stalled)
        try:
            pool.open()
            time.sleep(0.3)  # the peers register their queues once the response started
            before = server.rss()
            t0 = time.perf_counter() + 0.3
            query = f"contender={contender}&count={count}&rate={rate}&t0={t0}"
            server.call("POST", f"/start?{query}&size={size or p['size']}")
            peak = [before]
            deadline = t0 + seconds + p["drain"]
            started = (time.perf_counter(), time.process_time(), server.cpu(), server.writes())
            bytes_before, preempted_before = server.written_bytes(), server.preemptions()
            pool.run(count, deadline, on_tick=lambda: peak.append(server.rss()))
            wall = time.perf_counter() - started[0]
            client_cpu = (time.process_time() - started[1]) / wall
            user, system = (now - then for now, then in zip(server.cpu(), started[2], strict=True))
            writes = server.writes() - started[3]
            written = server.written_bytes() - bytes_before
            preempted = server.preemptions() - preempted_before
            server_seconds = user + system
            server_cpu = server_seconds / wall
            stats = server.call("GET", "/stats")
            collections = collections_in(stats["gc"], t0, pool.last_arrival() or deadline)
            waited = time.perf_counter() + p["closure_wait"]
            while len(stats["closed"].get("stalled", [])) < stalled and (
                time.perf_counter() < waited
            ):
                time.sleep(0.25)  # the stalled ones end after the write timeout
                peak.append(server.rss())
                stats = server.call("GET", "/stats")
        finally:
            pool.close()
    delivered = pool.delivered()
    elapsed = max(pool.last_arrival() - t0, 1e-9)
    readers = subscribers - stalled
    closed = [at - t0 for at in stats["closed"].get("stalled", [])]
    return {
        "contender": contender,
        "subscribers": subscribers,
        "stalled": stalled,
        "rate": rate,
        "events": count,
        "offered_per_s": readers * rate,
        "deliveries_per_s": delivered / elapsed,
        "delivered_share": delivered / (readers * count),
        "ended": sum(s.ended for s in pool.readers),
        "rss_growth_mb": (max(peak) - before) / 1e6,
        "client_cpu": client_cpu,
        "server_cpu": server_cpu,
        # everything the server did meanwhile (publisher, kernel TCP, GC), per delivery
        "server_us_per_delivery": server_seconds / max(delivered, 1) * 1e6,
        # and per write system call it made (about one per subscriber woken)
        "server_writes": writes,
        "server_user_us_per_write": user / max(writes, 1) * 1e6,
        "server_sys_us_per_write": system / max(writes, 1) * 1e6,
        # how much each write carried, and how often other processes took the server's CPU
        "server_bytes_per_write": written / max(writes, 1),
        "server_preempted": preempted,
        "gc": collections,
        "stalled_ended": len(closed),
        "stalled_ended_after_s": sorted(closed),
        **percentiles(pool.latencies(t0, rate)),
    }


def proc_field(path: str, name: str) -> int:
    """The first number after `name` in the Linux /proc file `path`."""
    with open(path) as lines:
        for line in lines:
            if line.startswith(name):
                return int(line.split()[1])
    raise RuntimeError(f"no {name} in {path}")


def collections_in(log: list[list[float]], start: float, end: float) -> dict[str, Any]:
    """The collections of the server's `log` (``[started, generation, seconds]``) that
    started between `start` and `end`, per generation: count, total and longest ms."""
    summary: dict[str, Any] = {
        str(generation): {"count": 0, "ms": 0.0, "max_ms": 0.0} for generation in (0, 1, 2)
    }
    for started, generation, seconds in log:
        if start <= started <= end:
            figures = summary[str(int(generation))]
            figures["count"] += 1
            figures["ms"] += seconds * 1000
            figures["max_ms"] = max(figures["max_ms"], seconds * 1000)
    return summary


def describe_collections(collections: dict[str, Any]) -> str:
    young = [collections[generation] for generation in ("0", "1")]
    full = collections["2"]
    return (
        f"GC full {full['count']} ({full['ms']:.0f} ms, longest {full['max_ms']:.0f}), "
        f"young {sum(g['count'] for g in young)} ({sum(g['ms'] for g in young):.0f} ms)"
    )


def kept_up(run: dict[str, Any]) -> bool:
    return bool(run["ended"] == 0 and run["delivered_share"] == 1 and run["p99"] <= P99_FLOOR_MS)


def fanout(p: dict[str, Any]) -> dict[str, Any]:
    trials = []
    for rate in p["rates"]:
        run = broadcast_run("streamfx", p["subscribers"], rate, p["seconds"], p)
        trials.append(run)
        report(run)
        if not kept_up(run):
            break
    passing = [run for run in trials if kept_up(run)]
    best = passing[-1] if passing else trials[0]
    peers = []
    for peer in p["peers"]:
        peers.append(broadcast_run(peer, p["subscribers"], best["rate"], p["seconds"], p))
        report(peers[-1])
    floor = broadcast_run("raw", p["subscribers"], best["rate"], p["seconds"], p)
    report(floor)
    return {"trials": trials, "best": best, "peers": peers, "floor": floor}


def idle(p: dict[str, Any]) -> dict[str, Any]:
    results = {}
    for contender in ("streamfx", *p["peers"]):
        with Server(p["write_timeout"]) as server:
            pool = Subscribers(server.port, f"/sub/{contender}", 1)
            pool.open()
            time.sleep(0.5)
            before = server.rss()
            crowd = Subscribers(server.port, f"/sub/{contender}", p["idle"])
            try:
                crowd.open()
                time.sleep(1.0)
                grown = server.rss() - before
                count = max(1, round(p["idle_rate"] * p["seconds"]))
                t0 = time.perf_counter() + 0.3
                query = f"contender={contender}&count={count}&rate={p['idle_rate']}&t0={t0}"
                server.call("POST", f"/start?{query}&size={p['size']}")
                crowd.run(count, t0 + p["seconds"] + p["drain"])
                stats = server.call("GET", "/stats")
                end = crowd.last_arrival() or t0 + p["seconds"] + p["drain"]
                collections = collections_in(stats["gc"], t0, end)
                latency = percentiles(crowd.latencies(t0, p["idle_rate"]))
                share = crowd.delivered() / (p["idle"] * count)
            finally:
                crowd.close()
                pool.close()
        results[contender] = {
            "kb_per_subscriber": grown / p["idle"] / 1024,
            "share": share,
            "gc": collections,
        }
        results[contender].update(latency)
        print(f"idle {contender:<18}{results[contender]}", flush=True)
    return {"subscribers": p["idle"], "rate": p["idle_rate"], "results": results}


def live(p: dict[str, Any]) -> dict[str, Any]:
    runs = {}
    for contender in p["live_contenders"]:
        runs[contender] = broadcast_run(
            contender, p["subscribers"], p["live_rate"], p["seconds"], p
        )
        report(runs[contender])
    floor = broadcast_run("raw", p["subscribers"], p["live_rate"], p["seconds"], p)
    report(floor)
    low = {}
    for contender in ("raw", "streamfx"):
        low[contender] = broadcast_run(contender, p["subscribers"], p["low_rate"], p["seconds"], p)
        report(low[contender])
    return {
        "subscribers": p["subscribers"],
        "rate": p["live_rate"],
        "runs": runs,
        "floor": floor,
        "low_rate": {"rate": p["low_rate"], "runs": low},
    }


def stalled(p: dict[str, Any]) -> dict[str, Any]:
    n, rate, seconds, size = (
        p["subscribers"],
        p["live_rate"],
        p["stalled_seconds"],
        p["stalled_size"],
    )
    readers_only = n - p["stalled"]
    runs = {
        "streamfx-baseline": broadcast_run("streamfx", readers_only, rate, seconds, p, size=size)
    }
    for contender in ("streamfx", *p["stalled_peers"]):
        runs[contender] = broadcast_run(
            contender, n, rate, seconds, p, stalled=p["stalled"], size=size
        )
    for run in runs.values():
        report(run)
    absorbed = absorbed_bytes()
    return {
        "write_timeout": p["write_timeout"],
        "heartbeat": HEARTBEAT,
        "size": size,
        "seconds": seconds,
        "absorbed_bytes": absorbed,
        "bound_s": absorbed / (rate * size) + p["write_timeout"] + HEARTBEAT,
        "runs": runs,
    }


def absorbed_bytes() -> int:
    """Bytes the kernel takes for a loopback client that never reads (with the
    stalled subscribers' receive buffer) before a write blocks: until then the server
    cannot tell the client is stalled."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RECEIVE_BUFFER)
            client.connect(listener.getsockname())
            accepted, _ = listener.accept()
            with accepted:
                accepted.setblocking(False)
                total = 0
                try:
                    while True:
                        total += accepted.send(b"x" * 65536)
                except BlockingIOError:
                    return total


def report(run: dict[str, Any]) -> None:
    print(
        f"{run['contender']:<18} {run['subscribers']:>5} subs ({run['stalled']} stalled) "
        f"{run['rate']:>5g} ev/s: {run['deliveries_per_s']:>10,.0f} deliveries/s, "
        f"p50 {run['p50']:.1f} ms, p99 {run['p99']:.1f} ms, delivered "
        f"{run['delivered_share']:.1%}, ended {run['ended']}, RSS +{run['rss_growth_mb']:.1f} MB, "
        f"CPU (cores) server {run['server_cpu']:.2f} client {run['client_cpu']:.2f}, "
        f"server {run['server_us_per_delivery']:.1f} us per delivery, "
        f"{run['server_writes']:,} writes, per write user "
        f"{run['server_user_us_per_write']:.1f} + sys {run['server_sys_us_per_write']:.1f} us, "
        f"{run['server_bytes_per_write']:.0f} B, preempted {run['server_preempted']:,}, "
        + describe_collections(run["gc"])
        + (f", stalled ended {run['stalled_ended']}" if run["stalled"] else ""),
        flush=True,
    )


def snapshot() -> dict[str, Any]:
    """The time (UTC) and the machine's load average (1, 5, 15 min), now."""
    return {"at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "load": os.getloadavg()}


def serve(fd: int, write_timeout: float) -> None:
    raise_open_files()
    app = build_app(None, write_timeout)
    run_uvicorn(app, fd, lifespan="on", backlog=8192, timeout_graceful_shutdown=2)


def main() -> None:
    parser = argparse.ArgumentParser(description="broadcast load test, side by side")
    parser.add_argument("--quick", action="store_true", help="CI-sized")
    parser.add_argument("--only", nargs="*", default=["fanout", "idle", "live", "stalled"])
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument(
        "--merge", action="store_true", help="keep the other scenarios of an existing --json"
    )
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--write-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(args.serve_fd, args.write_timeout)
        return
    raise_open_files()
    p = QUICK if args.quick else FULL
    scenarios = {"fanout": fanout, "idle": idle, "live": live, "stalled": stalled}
    output: dict[str, Any] = {}
    if args.merge and args.json and args.json.exists():
        output = json.loads(args.json.read_text())
        if output.get("params") != p:
            parser.error(f"{args.json} was measured with other settings: cannot merge")
    output |= {"params": p, "quick": args.quick}
    for name in args.only:
        print(f"\n== {name}", flush=True)
        started = snapshot()
        output[name] = scenarios[name](p)
        output[name]["conditions"] = {"start": started, "end": snapshot()}
        if args.json:  # after every scenario: a later failure keeps the earlier ones
            args.json.write_text(json.dumps(output, indent=1))


if __name__ == "__main__":
    main()
