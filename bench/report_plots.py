"""The report's plots (matplotlib, PNG), drawn from the suite's raw results.

``plot_all`` writes every plot into a folder and returns, for each, the Markdown that
shows it (``{{img_<name>}}`` in the template). Bars are medians over the runs; the
error bars span the lowest to the highest run.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def _values(runs: list[dict[str, Any]], *path: str) -> list[float]:
    out = []
    for run in runs:
        value: Any = run
        for key in path:
            if key not in value:
                return []
            value = value[key]
        out.append(float(value))
    return out


def _bars(
    ax: Any, names: list[str], series: dict[str, list[list[float]]], log: bool = False
) -> None:
    """Grouped bars: one group per name, one bar per series, min-max error bars."""
    width = 0.8 / max(1, len(series))
    for offset, (label, per_name) in enumerate(series.items()):
        xs, medians, low, high = [], [], [], []
        for index, values in enumerate(per_name):
            if not values:
                continue
            median = statistics.median(values)
            xs.append(index + offset * width - 0.4 + width / 2)
            medians.append(median)
            low.append(median - min(values))
            high.append(max(values) - median)
        ax.bar(xs, medians, width, yerr=[low, high], capsize=2, label=label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _save(fig: Any, folder: Path, name: str, alt: str) -> tuple[str, str]:
    fig.tight_layout()
    fig.savefig(folder / f"{name}.png", dpi=110)
    plt.close(fig)
    return f"img_{name}", f"![{alt}](img/{name}.png)"


def plot_all(
    approaches: dict[str, Any], sse_backlog: dict[str, Any], folder: Path
) -> dict[str, str]:
    runs: dict[str, list[dict[str, Any]]] = approaches["runs"]
    names = list(runs)
    few, many = (str(n) for n in approaches["params"]["slow_clients"])
    loads = [str(clients) for clients, _ in approaches["params"]["throughput"]]
    out: dict[str, str] = {}

    fig, ax = plt.subplots(figsize=(9, 4.5))
    _bars(
        ax,
        names,
        {
            f"produced / client ({few} slow)": [
                _values(runs[n], "backpressure", few, "produced_per_client") for n in names
            ],
            f"received / client ({few} slow)": [
                _values(runs[n], "backpressure", few, "received_per_client") for n in names
            ],
            f"produced / client ({many} slow)": [
                _values(runs[n], "backpressure", many, "produced_per_client") for n in names
            ],
        },
        log=True,
    )
    ax.set_ylabel("events (log scale)")
    ax.set_title("Slow clients: events produced vs received")
    key, value = _save(fig, folder, "backpressure", "events produced vs received")
    out[key] = value

    fig, ax = plt.subplots(figsize=(9, 4.5))
    _bars(
        ax,
        names,
        {
            f"RSS growth, {few} slow client": [
                _values(runs[n], "backpressure", few, "rss_growth_mb") for n in names
            ],
            f"RSS growth, {many} slow clients": [
                _values(runs[n], "backpressure", many, "rss_growth_mb") for n in names
            ],
        },
    )
    ax.set_ylabel("MB")
    ax.set_title("Server memory growth under slow clients")
    key, value = _save(fig, folder, "memory", "server memory growth under slow clients")
    out[key] = value

    fig, ax = plt.subplots(figsize=(9, 4.5))
    _bars(
        ax,
        names,
        {
            f"{c} client{'s' if c != '1' else ''}": [
                _values(runs[n], "throughput", c, "events_per_s") for n in names
            ]
            for c in loads
        },
        log=True,
    )
    ax.set_ylabel("events/s, all clients together (log scale)")
    ax.set_title("Throughput by number of concurrent clients")
    key, value = _save(fig, folder, "throughput", "events per second by clients")
    out[key] = value

    fig, ax = plt.subplots(figsize=(9, 4.5))
    _bars(
        ax,
        names,
        {
            "p50": [_values(runs[n], "live", "p50_ms") for n in names],
            "p99": [_values(runs[n], "live", "p99_ms") for n in names],
        },
        log=True,
    )
    ax.set_ylabel("ms from production to arrival (log scale)")
    ax.set_title("Latency of live events, many clients")
    key, value = _save(fig, folder, "latency", "latency p50 and p99")
    out[key] = value

    rates: dict[str, list[float]] = sse_backlog["events_per_s"]
    ordered = sorted(rates, key=lambda name: -statistics.median(rates[name]))
    fig, ax = plt.subplots(figsize=(7, 4))
    _bars(ax, ordered, {"events/s": [rates[name] for name in ordered]}, log=True)
    ax.set_ylabel("events/s, one client (log scale)")
    ax.set_title(f"SSE backlog of {sse_backlog['events']:,} events through uvicorn")
    key, value = _save(fig, folder, "sse_backlog", "SSE backlog throughput")
    out[key] = value
    return out
