"""How big the soak is: the full run (`make soak`) or the short one (``SOAK_QUICK=1``,
`make soak-quick`, what CI runs)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    churn_cycles: int
    churn_concurrency: int
    churn_seconds: float  # the time box per server (the cycles done are reported)
    idle_streams: int
    idle_streams_threaded: int  # WSGI holds one server thread per open stream
    healthy: int
    stalled: int
    slow: int
    readers_seconds: float
    readers_suspend_too: bool  # a second run with suspend for the two servers
    write_timeout: float
    heartbeat: float
    tick: float  # seconds between published events in the readers scenario
    event_size: int  # bytes of padding per event there
    shutdown_streams: int
    fuzz_seconds: float  # per fuzz target


FULL = Sizes(
    churn_cycles=10_000,
    churn_concurrency=32,
    churn_seconds=45.0,
    idle_streams=5_000,
    idle_streams_threaded=1_000,
    healthy=20,
    stalled=200,
    slow=20,
    readers_seconds=8.0,
    readers_suspend_too=True,
    write_timeout=4.0,
    heartbeat=1.0,
    tick=0.005,
    event_size=1024,
    shutdown_streams=500,
    fuzz_seconds=60.0,  # the size
)

QUICK = Sizes(
    churn_cycles=300,
    churn_concurrency=16,
    churn_seconds=15.0,
    idle_streams=200,
    idle_streams_threaded=100,
    healthy=20,  # samples enough for a p99 (as many as the full run's per second)
    stalled=30,
    slow=5,
    readers_seconds=4.0,  # run A: 2 s before run B and 2 s after it
    readers_suspend_too=False,
    write_timeout=2.0,  # a window of stalled clients long enough for a p99 of ~2,000
    heartbeat=0.5,
    tick=0.01,
    event_size=1024,
    shutdown_streams=50,
    fuzz_seconds=1.5,
)


def sizes() -> Sizes:
    return QUICK if os.environ.get("SOAK_QUICK", "") not in ("", "0") else FULL
