"""The report's "Broadcast" section: tables from `bench.load_broadcast` and
`bench.load_broadcast_redis` results, the issue's floors against what was measured,
with the peers' figures of the same run and the ratios.

Every figure comes from the JSON those scripts wrote; a floor is "met" only when the
measured value is on the right side of it in this run. The section also states when
the scenarios ran and the machine's load average then (each script records it).

`bench.report` renders the section with the rest of the report (``make bench``).
Alone, ``python -m bench.report_broadcast RESULTS REPORT`` renders only this section
of the template from the broadcast results in RESULTS (``load_broadcast.json``,
``load_broadcast_redis.json``, ``test_bench_broadcast.json``) and puts it into the
already generated REPORT in place of its broadcast section (or before "Pros and
cons"), leaving every other figure as it was: for a rerun of the broadcast benchmarks
without the whole suite.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

SECTION = "## Broadcast: one publisher, many subscribers"
NEXT_SECTION = "## Pros and cons"

LABELS = {
    "streamfx": "streamfx `Broadcast` (in process)",
    "sse-starlette": "sse-starlette broadcast example (queue per client)",
    "broadcaster": "broadcaster (memory backend) + EventSourceResponse",
    "sse-starlette-gen": "sse-starlette, one generator per client (no hub)",
    "raw": "the floor: hand-written raw ASGI fan-out, no library (not a peer)",
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
        _per_write(run),
        _collections(run.get("gc")),
    ]


def _per_write(run: dict[str, Any]) -> str:
    """The server's user + system CPU per write system call, in microseconds."""
    if "server_user_us_per_write" not in run:
        return "n/a"
    user, system = run["server_user_us_per_write"], run["server_sys_us_per_write"]
    return f"{user:,.1f} + {system:,.1f} = {user + system:,.1f}"


def _collections(gc: dict[str, Any] | None) -> str:
    """The server's full and young collections in the run's window: count (ms)."""
    if gc is None:
        return "n/a"
    young = [gc["0"], gc["1"]]
    return (
        f"{gc['2']['count']} ({gc['2']['ms']:,.0f}) / "
        f"{sum(g['count'] for g in young)} ({sum(g['ms'] for g in young):,.0f})"
    )


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
    "server CPU µs per write: user + sys",
    "server GC, full / young: count (ms)",
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
    if "floor" in fanout:
        rows.append(_run_row(fanout["floor"], LABELS["raw"]))
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
    live_rows = [_run_row(run, LABELS[name]) for name, run in live["runs"].items()]
    if "floor" in live:
        live_rows.append(_run_row(live["floor"], LABELS["raw"]))
        low = live["low_rate"]
        live_rows += [
            _run_row(run, f"{LABELS[name]}, at {low['rate']:g} events/s")
            for name, run in low["runs"].items()
        ]
    out["bc_live_table"] = _table(RUN_HEADER, live_rows)
    out["bc_live_floor"] = _live_floor(live)
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
    out["bc_conditions"] = _conditions(data, redis)
    out["bc_closing"] = _closing(data, redis)
    return out


def _write_cost(run: dict[str, Any]) -> str:
    user, system = run["server_user_us_per_write"], run["server_sys_us_per_write"]
    return f"{user + system:,.1f} µs of server CPU per write ({user:,.1f} user + {system:,.1f} sys)"


def _writes(run: dict[str, Any]) -> str:
    """How many writes the server made for how many deliveries."""
    delivered = run["delivered_share"] * (run["subscribers"] - run["stalled"]) * run["events"]
    return f"{run['server_writes']:,} writes for {delivered:,.0f} deliveries"


def _live_floor(live: dict[str, Any]) -> str:
    """What the machine allows the live floor: the hand-written raw ASGI fan-out's
    latency and CPU per write, at the live rate and at the low rate (where every write
    carries one event), with streamfx's in the same run."""
    if "floor" not in live:
        return "The floor (a hand-written raw ASGI fan-out) was not in this run."
    floor, mine, subscribers = live["floor"], live["runs"]["streamfx"], live["subscribers"]
    low = live["low_rate"]
    low_floor, low_mine = low["runs"]["raw"], low["runs"]["streamfx"]
    cost = low_floor["server_user_us_per_write"] + low_floor["server_sys_us_per_write"]
    publish_ms = cost * subscribers / 1000
    interval_ms = 1000 / live["rate"]
    met = floor["p50"] <= 1 and floor["p99"] <= 10
    return (
        f"**The live floor against the machine.** The floor rows are a hand-written "
        f"fan-out in plain ASGI on the same uvicorn worker (`RawFanout` in "
        f"`bench/broadcast_apps.py`: a shared list of encoded frames, one `asyncio.Event` "
        f"replaced per publish, each connection waits on it and sends everything new in "
        f"one `send`; no heartbeat, no write timeout, no overflow handling, no replay: it "
        f"is the floor, not a peer). CPU per write is the server's user and system time "
        f"over the run (/proc/PID/stat) divided by the write system calls it made "
        f"(/proc/PID/io). At {low['rate']:g} events/s, where each write carries one event "
        f"({_writes(low_floor)}), the floor spent {_write_cost(low_floor)}, so one publish "
        f"to {subscribers:,} subscribers costs at least {publish_ms:,.1f} ms of CPU before "
        f"the last one has it ("
        + ("more" if publish_ms > interval_ms else "less")
        + f" than the {interval_ms:g} ms between two publishes at {live['rate']} events/s); "
        f"it measured p50 {_ms(low_floor['p50'])} / p99 {_ms(low_floor['p99'])} ms. At "
        f"{live['rate']} events/s it measured p50 {_ms(floor['p50'])} / p99 "
        f"{_ms(floor['p99'])} ms, with {_writes(floor)} and {_write_cost(floor)}: "
        + (
            "within the live floor (p50 ≤ 1 ms, p99 ≤ 10 ms)."
            if met
            else "with no library at all, the live floor (p50 ≤ 1 ms, p99 ≤ 10 ms) is "
            "**not met** on this machine."
        )
        + f" streamfx in the same run: at {low['rate']:g} events/s p50 "
        f"{_ms(low_mine['p50'])} / p99 {_ms(low_mine['p99'])} ms, {_write_cost(low_mine)}; "
        f"at {live['rate']} events/s p50 {_ms(mine['p50'])} / p99 {_ms(mine['p99'])} ms "
        f"with {_writes(mine)} and {_write_cost(mine)}."
    )


def _conditions(data: dict[str, Any], redis: dict[str, Any]) -> str:
    """When each scenario ran and the 1-minute load average before / after it."""
    parts = []
    scenarios = [(name, data[name]) for name in ("fanout", "idle", "live", "stalled")]
    for name, result in [*scenarios, ("Redis and replay", redis)]:
        conditions = result.get("conditions")
        if conditions is None:
            parts.append(f"{name}: not recorded")
            continue
        start, end = conditions["start"], conditions["end"]
        parts.append(
            f"{name} {start['at'][11:16]} to {end['at'][11:16]}: "
            f"{start['load'][0]:.2f} / {end['load'][0]:.2f}"
        )
    first = next(
        (r["conditions"]["start"]["at"][:10] for _, r in scenarios if "conditions" in r), None
    )
    if first is None:
        return "When these scenarios ran and the machine's load then were not recorded."
    return (
        f"The broadcast scenarios ran on {first} (UTC); the machine's 1-minute load average "
        f"at the start / end of each: " + "; ".join(parts) + "."
    )


def _times(mine: float, theirs: float) -> str:
    return "n/a" if not mine or mine != mine or theirs != theirs else f"{theirs / mine:,.1f}x"


def _closing(data: dict[str, Any], redis: dict[str, Any]) -> str:
    """The ratios to the peers in one paragraph (each: the peer's figure / streamfx's,
    or streamfx's / the peer's for deliveries, so that above 1 favours streamfx)."""
    best = data["fanout"]["best"]
    peers = {run["contender"]: run for run in data["fanout"]["peers"]}
    idle = data["idle"]["results"]
    live = data["live"]["runs"]
    sentences = []
    for name, run in peers.items():
        sentences.append(
            f"{_times(run['deliveries_per_s'], best['deliveries_per_s'])} the deliveries/s "
            f"of {LABELS[name]} at {best['rate']:g} events/s"
        )
    for name, result in idle.items():
        if name != "streamfx":
            sentences.append(
                f"{_times(idle['streamfx']['kb_per_subscriber'], result['kb_per_subscriber'])}"
                f" less memory per idle subscriber than {LABELS[name]}"
            )
    for name, run in live.items():
        if name != "streamfx":
            sentences.append(
                f"a live p99 {_times(live['streamfx']['p99'], run['p99'])} lower than "
                f"{LABELS[name]}'s"
            )
    if "skipped" not in redis and "broadcaster" in redis["redis"]:
        mine, theirs = redis["redis"]["streamfx"], redis["redis"]["broadcaster"]
        sentences.append(
            f"across {redis['params']['workers']} workers on Redis a publish→deliver p99 "
            f"{_times(mine['p99'], theirs['p99'])} lower than broadcaster's"
        )
    return "In this run streamfx had " + "; ".join(sentences) + "."


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
    scenarios = [("latency (the floor's row)", redis["redis"])]
    if "redis_load" in redis:
        scenarios.append(("load (more than 2 cores carry)", redis["redis_load"]))
    for scenario, results in scenarios:
        for name, result in results.items():
            behind = result["behind_schedule"]
            count = result.get("subscribers", params.get("subscribers"))
            rows.append(
                [
                    f"{scenario}: {names[name]}",
                    f"{count:,} ("
                    + ", ".join(str(n) for n in sorted(result["workers"].values(), reverse=True))
                    + ")",
                    _ms(result["p50"]),
                    _ms(result["p99"]),
                    f"{_ms(behind['p50'])} / {_ms(behind['p99'])}",
                    f"{result['delivered_share']:.1%}",
                    str(result["ended"]),
                ]
            )
    table = _table(
        [
            f"{params['workers']} workers, {params['rate']:,} events/s",
            "subscribers (per worker)",
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
    """One row per floor of issue 13: streamfx's figure, the peer's in the same run, the
    ratio (above 1 favours streamfx) and whether the floor was met."""
    best = data["fanout"]["best"]
    idle = data["idle"]["results"]
    live = data["live"]["runs"]
    peers = {run["contender"]: run for run in data["fanout"]["peers"]}
    peer = peers.get("sse-starlette")
    ratio = best["deliveries_per_s"] / peer["deliveries_per_s"] if peer else float("nan")
    gen = live.get("sse-starlette-gen")
    runs = stalled["runs"]
    mine = runs["streamfx"]
    stalled_peer = runs.get("sse-starlette")

    def peer_run(run: dict[str, Any] | None, name: str) -> str:
        if run is None:
            return "not in this run"
        return (
            f"{name}: {run['deliveries_per_s']:,.0f}/s, p50 {_ms(run['p50'])} / "
            f"p99 {_ms(run['p99'])} ms, {run['delivered_share']:.0%} delivered"
        )

    idle_peer = idle.get("sse-starlette")
    rows = [
        [
            f"fan-out, {data['params']['subscribers']:,} subscribers (the floor: 1,000): "
            "≥ 200k deliveries/s at p99 ≤ 50 ms",
            f"{best['deliveries_per_s']:,.0f}/s at {best['rate']:g} events/s, "
            f"p99 {_ms(best['p99'])} ms",
            peer_run(peer, "sse-starlette example"),
            f"{_times(peer['deliveries_per_s'], best['deliveries_per_s'])} deliveries/s"
            if peer
            else "-",
            _met(best["deliveries_per_s"] >= 200_000 and best["p99"] <= 50),
        ],
        [
            "fan-out: ≥ 25x sse-starlette's deliveries/s",
            f"{ratio:,.1f}x",
            "; ".join(
                f"{name}: {run['deliveries_per_s']:,.0f}/s "
                f"({_times(run['deliveries_per_s'], best['deliveries_per_s'])})"
                for name, run in peers.items()
            )
            or "not in this run",
            f"{ratio:,.1f}x",
            _met(ratio >= 25),
        ],
        [
            f"{data['idle']['subscribers']:,} idle subscribers (the floor: 5,000): ≤ 12 KB each; "
            f"p99 ≤ 250 ms at {data['idle']['rate']} events/s",
            f"{idle['streamfx']['kb_per_subscriber']:,.1f} KB; "
            f"p99 {_ms(idle['streamfx']['p99'])} ms",
            f"sse-starlette example: {idle_peer['kb_per_subscriber']:,.1f} KB; "
            f"p99 {_ms(idle_peer['p99'])} ms, {idle_peer['share']:.0%} delivered"
            if idle_peer
            else "not in this run",
            f"{_times(idle['streamfx']['kb_per_subscriber'], idle_peer['kb_per_subscriber'])}"
            f" less memory; p99 {_times(idle['streamfx']['p99'], idle_peer['p99'])} lower"
            if idle_peer
            else "-",
            _met(idle["streamfx"]["kb_per_subscriber"] <= 12 and idle["streamfx"]["p99"] <= 250),
        ],
        [
            f"live, {data['live']['subscribers']:,} subscribers at {data['live']['rate']} "
            "events/s: p50 ≤ 1 ms, p99 ≤ 10 ms, at or below one generator per client",
            f"p50 {_ms(live['streamfx']['p50'])} / p99 {_ms(live['streamfx']['p99'])} ms",
            peer_run(gen, "sse-starlette, a generator per client"),
            f"p99 {_times(live['streamfx']['p99'], gen['p99'])} lower" if gen else "-",
            _met(
                live["streamfx"]["p50"] <= 1
                and live["streamfx"]["p99"] <= 10
                and (gen is None or live["streamfx"]["p99"] <= gen["p99"])
            ),
        ],
        [
            f"stalled ({mine['stalled']} of {mine['subscribers']:,} never read; the floor: 100 "
            "of 1,000): memory within the bound; healthy p99 within 1.5x of the run without "
            "them; stalled ended within the bound",
            f"RSS +{mine['rss_growth_mb']:,.1f} MB; p99 {_ms(mine['p99'])} ms = "
            f"{p99_ratio:.2f}x the run without them ({_ms(runs['streamfx-baseline']['p99'])} ms);"
            f" {mine['stalled_ended']} of {mine['stalled']} ended (bound "
            f"{stalled['bound_s']:.1f} s)",
            f"sse-starlette example: RSS +{stalled_peer['rss_growth_mb']:,.1f} MB, "
            f"p99 {_ms(stalled_peer['p99'])} ms, {stalled_peer['stalled_ended']} ended"
            if stalled_peer
            else "not in this run",
            f"p99 {_times(mine['p99'], stalled_peer['p99'])} lower" if stalled_peer else "-",
            _met(
                p99_ratio <= 1.5
                and mine["stalled_ended"] == mine["stalled"]
                and all(t <= stalled["bound_s"] for t in mine["stalled_ended_after_s"])
            ),
        ],
        [
            "replay of 1,000 events from memory ≤ 1 ms",
            f"{_ms(redis['replay_memory']['median_ms'])} ms",
            "-",
            "no peer replays",
            _met(redis["replay_memory"]["median_ms"] <= 1),
        ],
    ]
    if "skipped" not in redis:
        result = redis["redis"]["streamfx"]
        theirs = redis["redis"].get("broadcaster")
        rows.append(
            [
                "Redis, 4 workers, 1,000 events/s: publish→deliver p50 ≤ 2 ms, p99 ≤ 10 ms"
                f" (this run: {redis['params']['workers']} workers,"
                f" {result.get('subscribers', redis['params']['subscribers']):,} subscribers)",
                f"p50 {_ms(result['p50'])} / p99 {_ms(result['p99'])} ms, "
                f"{result['delivered_share']:.0%} delivered",
                f"broadcaster redis-stream: p50 {_ms(theirs['p50'])} / p99 "
                f"{_ms(theirs['p99'])} ms, {theirs['delivered_share']:.0%} delivered"
                if theirs
                else "not in this run",
                f"p99 {_times(result['p99'], theirs['p99'])} lower" if theirs else "-",
                _met(result["p50"] <= 2 and result["p99"] <= 10 and result["ended"] == 0),
            ]
        )
        rows.append(
            [
                "replay of 1,000 events from Redis ≤ 10 ms",
                f"{_ms(redis['replay_redis']['median_ms'])} ms",
                "-",
                "no peer replays",
                _met(redis["replay_redis"]["median_ms"] <= 10),
            ]
        )
    else:
        rows.append(["Redis rows", redis["skipped"], "-", "-", "**not measured**"])
    header = ["floor (issue 13)", "streamfx, this run", "peer, same run", "ratio", ""]
    return _table(header, rows)


def render_section(template: str, values: dict[str, str]) -> str:
    """The broadcast section of `template` with its placeholders filled from `values`."""
    start = template.index(SECTION)
    section = template[start : template.index(NEXT_SECTION, start)]
    missing = set(re.findall(r"\{\{(\w+)\}\}", section)) - values.keys()
    if missing:
        raise KeyError(f"placeholders without a value: {missing}")
    return re.sub(r"\{\{(\w+)\}\}", lambda match: values[match.group(1)], section)


def splice(report: str, section: str) -> str:
    """`report` with its broadcast section replaced by `section` (or, when it has none,
    `section` put before "Pros and cons")."""
    end = report.index(NEXT_SECTION)
    start = report.find(SECTION)
    return report[: start if start >= 0 else end] + section + report[end:]


def main() -> None:
    from bench import report  # report imports this module: imported here, not above

    parser = argparse.ArgumentParser(
        description="render the broadcast section alone into an already generated report"
    )
    parser.add_argument("results", type=Path, help="the folder of the broadcast results")
    parser.add_argument("report", type=Path, help="the generated report to update")
    args = parser.parse_args()
    values = broadcast_fragments(args.results)
    values["pytest_broadcast"] = report.pytest_table(args.results, "test_bench_broadcast")
    section = render_section(report.TEMPLATE.read_text(), values)
    args.report.write_text(splice(args.report.read_text(), section))


if __name__ == "__main__":
    main()
