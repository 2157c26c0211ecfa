"""Run the whole benchmark suite, then write the report from what it measured.

``make bench`` runs ``python -m bench.suite``: every pytest-benchmark file in
``bench/`` (``--benchmark-json``), every load script (``--json``) and
`bench.approaches`, one after the other (never two at once, so they do not compete for
the CPU), each writing its raw results under ``bench-results/`` (not committed). Then
`bench.report` turns them into ``docs/streaming-report.md`` and its plots in
``docs/img/``. A script that fails stops the run with its exit status: no report is
written from partial results.

``--quick`` (``make bench-quick``; CI does not run it) sizes every step down so the whole
suite finishes in a few minutes, writes under ``bench-results/quick/`` and renders the
report there too, leaving ``docs/`` alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "streamfx",
    "starlette",
    "fastapi",
    "sse-starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "aiohttp",
    "aiohttp-sse",
    "anyio",
    "aiostream",
    "orjson",
    "python-multipart",
    "gunicorn",
    "flask",
    "werkzeug",
    "pytest-benchmark",
    "matplotlib",
    "broadcaster",
    "redis",
    "hiredis",
)
PYTEST_FILES = (
    "test_bench_core",
    "test_bench_sse",
    "test_bench_download",
    "test_bench_export",
    "test_bench_multipart",
    "test_bench_aiohttp_download",
    "test_bench_wsgi",
    "test_bench_broadcast",
)
# (results name, module, full-run arguments, quick-run arguments)
LOAD_SCRIPTS: tuple[tuple[str, str, list[str], list[str]], ...] = (
    ("load_sse_asgi", "bench.load_sse_asgi", [], ["--events", "5000", "--rounds", "1"]),
    (
        "idle_sse_asgi",
        "bench.idle_sse_asgi",
        ["--connections", "1000"],
        ["--connections", "50", "--events", "20"],
    ),
    ("load_download_asgi", "bench.load_download_asgi", [], ["--size-mb", "8", "--rounds", "1"]),
    ("load_export_asgi", "bench.load_export_asgi", [], ["--rows", "5000", "--rounds", "1"]),
    ("load_sse_aiohttp", "bench.load_sse_aiohttp", [], ["--events", "5000", "--rounds", "1"]),
    (
        "load_download_aiohttp",
        "bench.load_download_aiohttp",
        [],
        ["--size-mb", "8", "--rounds", "1"],
    ),
    (
        "load_sse_latency_aiohttp",
        "bench.load_sse_latency_aiohttp",
        [],
        ["--samples", "200"],
    ),
    (
        "load_upload",
        "bench.load_upload",
        [],
        ["--file-mb", "8", "--fields", "2000", "--rounds", "1"],
    ),
    ("approaches", "bench.approaches", [], ["--quick"]),
    ("load_broadcast", "bench.load_broadcast", [], ["--quick"]),
    # starts its own redis-server (apt-get installs it when missing, as root); when
    # that is impossible it prints why and records the Redis rows as skipped
    ("load_broadcast_redis", "bench.load_broadcast_redis", [], ["--quick"]),
)


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": os.getloadavg(),
        "versions": versions,
    }


def run(command: list[str]) -> None:
    print("+", " ".join(command), file=sys.stderr, flush=True)
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True)
    print(f"  ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="run the benchmark suite and the report")
    parser.add_argument("--quick", action="store_true", help="the short run")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the report from earlier results"
    )
    args = parser.parse_args()
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    results = ROOT / "bench-results" / ("quick" if quick else "full")
    results.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if not args.render_only:
        info = machine()
        python = sys.executable
        for name in PYTEST_FILES:
            command = [python, "-m", "pytest", f"bench/{name}.py", "-q", "-p", "no:randomly"]
            command += ["--benchmark-enable", f"--benchmark-json={results / name}.json"]
            if quick:
                command += ["--benchmark-min-rounds=1", "--benchmark-max-time=0.01"]
                command += ["--benchmark-warmup=off"]
            run(command)
        for name, module, full, small in LOAD_SCRIPTS:
            arguments = small if quick else full
            run([python, "-m", module, *arguments, "--json", str(results / f"{name}.json")])
        info["suite_seconds"] = time.monotonic() - started
        info["quick"] = quick
        (results / "machine.json").write_text(json.dumps(info, indent=1))
    from bench import report

    target = results if quick else ROOT / "docs"
    report.render(results, target)
    print(f"report written to {target / 'streaming-report.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
