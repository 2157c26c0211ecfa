"""The report's "Broadcast" section: tables from `bench.load_broadcast` and
`bench.load_broadcast_redis` results, and the issue's floors against what was measured.

Every figure comes from the JSON those scripts wrote; a floor is "met" only when the
measured value is on the right side of it in this run.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

LABELS = {
    "streamfx": "streamfx `Broadcast` (in process)",
    "sse-starlette": "sse-starlette broadcast example (queue per client)",
    "broadcaster": "broadcaster (memory backend) + EventSourceResponse",
    "sse-starlette-gen": "sse-starlette, one generator per client (no hub)",
}


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:,.1f}"


def _run_row(run: dict[str, Any], label: str) -> list[str]:
    return [
        label,
        f"{run['subscribers'] - run['stalled']:,}",
        f"{run['rate']:,g}",
        f"{run['deliveries_per_s']:,.0f}",
        _ms(run["p50"]),
        _ms(run["p99"]),
        f"{run['delivered_share']:.1%}",
        str(run["ended"]),
        f"{run['rss_growth_mb']:,.1f}",
        f"{run.get('server_cpu', float('nan')):.2f} / {run.get('client_cpu', float('nan')):.2f}",
    ]


RUN_HEADER = [
    "contender",
    "reading subscribers",
    "events/s published",
    "deliveries/s",
    "p50 ms",
    "p99 ms",
    "delivered",
    "ended early",
    "RSS growth MB",
    "CPU cores used: server / client",
]


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def broadcast_fragments(results: Path) -> dict[str, str]:
    data = json.loads((results / "load_broadcast.json").read_text())
    redis = json.loads((results / "load_broadcast_redis.json").read_text())
    out: dict[str, str] = {}
    fanout, idle, live, stalled = data["fanout"], data["idle"], data["live"], data["stalled"]
    best = fanout["best"]
    rows = [_run_row(run, f"streamfx at {run['rate']:g}/s") for run in fanout["trials"]]
    rows += [_run_row(run, LABELS[run["contender"]]) for run in fanout["peers"]]
    out["bc_fanout_table"] = _table(RUN_HEADER, rows)
    ratios = {
        run["contender"]: best["deliveries_per_s"] / max(run["deliveries_per_s"], 1e-9)
        for run in fanout["peers"]
    }
    out["bc_fanout_ratio"] = ", ".join(f"{ratio:,.1f}x {name}'s" for name, ratio in ratios.items())
    out["bc_idle_table"] = _table(
        [
            "contender",
            "KB per idle subscriber",
            f"p50 ms at {idle['rate']}/s",
            "p99 ms",
            "delivered",
        ],
        [
            [
                LABELS[name],
                f"{result['kb_per_subscriber']:,.1f}",
                _ms(result["p50"]),
                _ms(result["p99"]),
                f"{result['share']:.1%}",
            ]
            for name, result in idle["results"].items()
        ],
    )
    out["bc_live_table"] = _table(
        RUN_HEADER, [_run_row(run, LABELS[name]) for name, run in live["runs"].items()]
    )
    runs = stalled["runs"]
    stalled_rows = []
    for name, run in runs.items():
        ended = run["stalled_ended_after_s"]
        when = f"{statistics.median(ended):.1f} / {max(ended):.1f}" if ended else "-"
        label = LABELS.get(name, "streamfx, without the stalled subscribers")
        ended_count = f"{run['stalled_ended']} of {run['stalled']}"
        stalled_rows.append([*_run_row(run, label), ended_count, when])
    out["bc_stalled_table"] = _table(
        [*RUN_HEADER, "stalled ended", "ended after s (median / last)"], stalled_rows
    )
    with_stalled, baseline = runs["streamfx"], runs["streamfx-baseline"]
    p99_ratio = with_stalled["p99"] / baseline["p99"]
    out["bc_stalled_params"] = (
        f"{stalled['runs']['streamfx']['subscribers']:,} subscribers of which "
        f"{stalled['runs']['streamfx']['stalled']} never read, {live['rate']} events/s of "
        f"{stalled['size']:,} bytes for {stalled['seconds']:g} s; write timeout "
        f"{stalled['write_timeout']:g} s, heartbeat {stalled['heartbeat']:g} s; a loopback "
        f"connection that is not read absorbed {stalled['absorbed_bytes'] / 1e6:.1f} MB "
        f"before the server's write blocked, so the bound for ending a stalled subscriber "
        f"is {stalled['bound_s']:.1f} s"
    )
    params = data["params"]
    out["bc_params"] = (
        f"{params['subscribers']:,} subscribers, {params['seconds']:g} s per run, "
        f"{params['size']}-byte events"
    )
    out["bc_idle_params"] = (
        f"{idle['subscribers']:,} idle subscribers, then {idle['rate']} events/s"
    )
    out["bc_live_params"] = f"{live['subscribers']:,} subscribers, {live['rate']} events/s"
    redis_rows, replay_rows = _redis_rows(redis)
    out["bc_redis_table"] = redis_rows
    out["bc_replay_table"] = replay_rows
    out["bc_floors_table"] = _floors(data, redis, p99_ratio, stalled)
    return out


def _redis_rows(redis: dict[str, Any]) -> tuple[str, str]:
    replay = [["from memory (one process)", _ms(redis["replay_memory"]["median_ms"])]]
    if "skipped" in redis:
        return f"*{redis['skipped']}*", _table(["replay of 1,000 events", "median ms"], replay)
    params = redis["params"]
    rows = []
    names = {
        "streamfx": "streamfx `RedisStreamsBackend`",
        "broadcaster": "broadcaster redis-stream",
    }
    for name, result in redis["redis"].items():
        behind = result["behind_schedule"]
        rows.append(
            [
                names[name],
                ", ".join(str(n) for n in sorted(result["workers"].values(), reverse=True)),
                _ms(result["p50"]),
                _ms(result["p99"]),
                f"{_ms(behind['p50'])} / {_ms(behind['p99'])}",
                f"{result['delivered_share']:.1%}",
                str(result["ended"]),
            ]
        )
    table = _table(
        [
            f"{params['workers']} workers, {params['subscribers']} subscribers, "
            f"{params['rate']:,} events/s",
            "subscribers per worker",
            "publish→deliver p50 ms",
            "p99 ms",
            "due→deliver p50 / p99 ms",
            "delivered",
            "ended early",
        ],
        rows,
    )
    replay.append(["from Redis (XRANGE)", _ms(redis["replay_redis"]["median_ms"])])
    return table, _table(["replay of 1,000 events", "median ms"], replay)


def _floors(
    data: dict[str, Any], redis: dict[str, Any], p99_ratio: float, stalled: dict[str, Any]
) -> str:
    best = data["fanout"]["best"]
    idle = data["idle"]["results"]["streamfx"]
    live = data["live"]["runs"]
    peers = {run["contender"]: run for run in data["fanout"]["peers"]}
    peer = peers.get("sse-starlette")
    ratio = best["deliveries_per_s"] / peer["deliveries_per_s"] if peer else float("nan")
    gen = live.get("sse-starlette-gen")
    mine = stalled["runs"]["streamfx"]
    rows = [
        [
            "fan-out: deliveries/s ≥ 200k at p99 ≤ 50 ms",
            f"{best['deliveries_per_s']:,.0f}/s at p99 {_ms(best['p99'])} ms",
            _met(best["deliveries_per_s"] >= 200_000 and best["p99"] <= 50),
        ],
        ["fan-out: ≥ 25x sse-starlette's", f"{ratio:,.1f}x", _met(ratio >= 25)],
        [
            "idle: ≤ 12 KB per subscriber; p99 ≤ 250 ms at 20 events/s",
            f"{idle['kb_per_subscriber']:,.1f} KB; p99 {_ms(idle['p99'])} ms",
            _met(idle["kb_per_subscriber"] <= 12 and idle["p99"] <= 250),
        ],
        [
            "live: p50 ≤ 1 ms, p99 ≤ 10 ms, at or below one generator per client",
            f"p50 {_ms(live['streamfx']['p50'])} / p99 {_ms(live['streamfx']['p99'])} ms"
            + (f" (generators: {_ms(gen['p50'])} / {_ms(gen['p99'])})" if gen else ""),
            _met(
                live["streamfx"]["p50"] <= 1
                and live["streamfx"]["p99"] <= 10
                and (gen is None or live["streamfx"]["p99"] <= gen["p99"])
            ),
        ],
        [
            "stalled: healthy p99 within 1.5x of the run without them; stalled ended in bound",
            f"{p99_ratio:.2f}x; {mine['stalled_ended']} of {mine['stalled']} ended",
            _met(
                p99_ratio <= 1.5
                and stalled["runs"]["streamfx"]["stalled_ended"]
                == stalled["runs"]["streamfx"]["stalled"]
                and all(
                    t <= stalled["bound_s"]
                    for t in stalled["runs"]["streamfx"]["stalled_ended_after_s"]
                )
            ),
        ],
        [
            "replay of 1,000 from memory ≤ 1 ms",
            f"{_ms(redis['replay_memory']['median_ms'])} ms",
            _met(redis["replay_memory"]["median_ms"] <= 1),
        ],
    ]
    if "skipped" not in redis:
        result = redis["redis"]["streamfx"]
        rows.append(
            [
                "Redis, 4 workers, 1,000 events/s: publish→deliver p50 ≤ 2 ms, p99 ≤ 10 ms"
                f" (this run: {redis['params']['workers']} workers)",
                f"p50 {_ms(result['p50'])} / p99 {_ms(result['p99'])} ms, "
                f"{result['delivered_share']:.0%} delivered",
                _met(result["p50"] <= 2 and result["p99"] <= 10 and result["ended"] == 0),
            ]
        )
        rows.append(
            [
                "replay of 1,000 from Redis ≤ 10 ms",
                f"{_ms(redis['replay_redis']['median_ms'])} ms",
                _met(redis["replay_redis"]["median_ms"] <= 10),
            ]
        )
    return _table(["floor (issue 13)", "this run", ""], rows)
