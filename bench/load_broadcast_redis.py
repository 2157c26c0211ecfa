"""Broadcast across processes on Redis, and replay after a reconnect.

- ``redis``: a local ``redis-server`` (``--save '' --appendonly no``, installed with
  apt-get when missing and root; when it cannot be had, this part is skipped and the
  reason printed and recorded), ``uvicorn --workers WORKERS`` serving
  `bench.broadcast_apps` on it; raw-socket subscribers spread over the workers by the
  kernel; one worker publishes RATE events/s for SECONDS. p50/p99 from each event's
  publish (a timestamp in the event) to its arrival (and, apart, from its due time,
  which adds how far the publisher fell behind), streamfx (`RedisStreamsBackend`)
  against ``broadcaster`` on its Redis Streams backend (each client in sse-starlette's
  ``EventSourceResponse``; its pub/sub backend delivered nothing here, see
  `bench.broadcast_apps`). Two rows, same workers and settings:

  - ``latency`` (the floor's row, key ``redis``): SUBSCRIBERS subscribers, a few per
    worker, so the figure is the cross-process path (XADD, the workers' XREADs, the
    fan-out, the socket) and not the machine's capacity;
  - ``load`` (key ``redis_load``): LOAD_SUBSCRIBERS subscribers, where on 2 cores the
    deliveries (subscribers x RATE per second, with 4 workers, Redis, the publisher and
    this client on them) exceed what the machine can carry: the overload figure.
- ``replay``: a subscriber reconnects with the ``Last-Event-ID`` of an event 1,000
  events back: the time from its request to the 1,000th replayed event, median of
  ROUNDS. From memory (one process, history 2,000) and from Redis (the workers' hub
  keeps 100 events in memory, so the replay is read from the stream with ``XRANGE``).
  No peer replays at all.

It records when it ran and the load average before and after (``conditions``).

Run: ``.venv/bin/python -m bench.load_broadcast_redis [--quick] [--json out.json]``;
``--only replay latency`` runs some parts (the report needs all three).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench._subscribers import Subscribers, open_stream, percentiles
from bench.broadcast_apps import raise_open_files
from bench.load_broadcast import Server, snapshot
from examples.demo.redis_server import LocalRedis, RedisUnavailable

FULL: dict[str, Any] = {
    "workers": 4,
    "subscribers": 16,
    "load_subscribers": 200,
    "rate": 1000,
    "seconds": 5.0,
    "rounds": 20,
}
QUICK: dict[str, Any] = {
    "workers": 2,
    "subscribers": 4,
    "load_subscribers": 20,
    "rate": 1000,
    "seconds": 1.0,
    "rounds": 3,
}
PARTS = ("replay", "latency", "load")
REPLAYED = 1000
DRAIN = 5.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def call(port: int, method: str, path: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class Workers:
    """``uvicorn --workers N`` serving `bench.broadcast_apps.redis_app` on Redis."""

    def __init__(self, redis_url: str, workers: int) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "uvicorn", "bench.broadcast_apps:redis_app"]
        command += ["--factory", "--workers", str(workers), "--port", str(self.port)]
        command += ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
        command += ["--no-access-log", "--backlog", "8192", "--timeout-graceful-shutdown", "2"]
        env = {**os.environ, "BENCH_REDIS": redis_url}
        self.process = subprocess.Popen(command, env=env)
        deadline = time.monotonic() + 60
        seen: set[int] = set()
        while len(seen) < workers:  # every worker answers (its lifespan is done)
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{len(seen)} of {workers} workers answered in 60 s")
            try:
                seen.add(call(self.port, "GET", "/stats")["worker"])
            except OSError:
                time.sleep(0.1)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def across_workers(
    workers: Workers, contender: str, p: dict[str, Any], subscribers: int
) -> dict[str, Any]:
    pool = Subscribers(workers.port, f"/sub/{contender}", subscribers, stamped=True)
    try:
        pool.open()
        time.sleep(0.5)
        count = round(p["rate"] * p["seconds"])
        t0 = time.perf_counter() + 0.5
        query = f"contender={contender}&count={count}&rate={p['rate']}&t0={t0}"
        publisher = call(workers.port, "POST", f"/start?{query}")["worker"]
        pool.run(count, t0 + p["seconds"] + DRAIN)
        behind = pool.latencies(t0, p["rate"])
        result = {
            "subscribers": subscribers,
            "publisher": publisher,
            "workers": pool.workers(),
            "delivered_share": pool.delivered() / (len(pool.readers) * count),
            "ended": sum(s.ended for s in pool.readers),
            **percentiles(pool.publish_to_arrival()),
            "behind_schedule": percentiles(behind),
        }
    finally:
        pool.close()
    print(f"redis {p['workers']} workers {subscribers} subs {contender:<12}{result}", flush=True)
    return result


def replay_seconds(port: int, after: str) -> float:
    """Seconds from a reconnect with ``Last-Event-ID: after`` to the 1,000th event."""
    started = time.perf_counter()
    subscriber = open_stream(port, "/sub/streamfx?topic=replay", f"Last-Event-ID: {after}\r\n")
    received = subscriber.first_body
    subscriber.sock.settimeout(30)
    try:
        while received.count(b"data: ") < REPLAYED:
            chunk = subscriber.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("the replay ended early")
            received += chunk
        return time.perf_counter() - started
    finally:
        subscriber.sock.close()


def replay(port: int, rounds: int) -> dict[str, Any]:
    filled = call(port, "POST", f"/fill?n={REPLAYED + 100}")
    replay_seconds(port, filled["after"])  # warm-up
    values = [replay_seconds(port, filled["after"]) for _ in range(rounds)]
    return {"rounds": rounds, "median_ms": statistics.median(values) * 1000, "seconds": values}


def main() -> None:
    parser = argparse.ArgumentParser(description="broadcast across workers on Redis; replay")
    parser.add_argument("--quick", action="store_true", help="CI-sized")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--only", nargs="*", choices=PARTS, default=list(PARTS))
    args = parser.parse_args()
    raise_open_files()
    p = QUICK if args.quick else FULL
    output: dict[str, Any] = {"params": p, "replayed": REPLAYED}
    started = snapshot()
    if "replay" in args.only:
        with Server(60.0) as server:
            output["replay_memory"] = replay(server.port, p["rounds"])
        print(f"replay of {REPLAYED} from memory: {output['replay_memory']['median_ms']:.2f} ms")
    try:
        redis = LocalRedis()
    except RedisUnavailable as exc:
        reason = f"skipped the Redis rows: {exc}"
        print(reason, flush=True)
        output["skipped"] = reason
    else:
        with redis:
            workers = Workers(redis.url, p["workers"])  # every contender is in its app
            try:
                rows = {
                    "latency": ("redis", "subscribers"),
                    "load": ("redis_load", "load_subscribers"),
                }
                for part, (key, count) in rows.items():
                    if part in args.only:
                        output[key] = {
                            contender: across_workers(workers, contender, p, p[count])
                            for contender in ("streamfx", "broadcaster")
                        }
                if "replay" in args.only:
                    output["replay_redis"] = replay(workers.port, p["rounds"])
                    median = output["replay_redis"]["median_ms"]
                    print(f"replay of {REPLAYED} from Redis: {median:.2f} ms")
            finally:
                workers.close()
    output["conditions"] = {"start": started, "end": snapshot()}
    if args.json:
        args.json.write_text(json.dumps(output, indent=1))


if __name__ == "__main__":
    main()
