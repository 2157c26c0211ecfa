"""WSGI streaming throughput: `to_wsgi` against the usual Flask recipe, same server.

gunicorn (gthread worker, one process) serves bench/wsgi_bench_app.py; curl reads each
response to its end. Each job runs both ways in the same session:

- an SSE backlog of 100k events (`sse()` with a suspend buffer, against a Flask
  generator yielding ``f"data: {i}\\n\\n"`` per event);
- an NDJSON export of 100k rows (`export()`, against ``json.dumps(row) + "\\n"`` per row).

``extra_info["per_s"]`` holds events or rows per second. Run with ``make bench`` or
``pytest bench/test_bench_wsgi.py --benchmark-enable``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

COUNT = 100_000
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    log = tmp_path_factory.mktemp("bench-wsgi") / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "--bind", f"fd://{listener.fileno()}"]
    command += ["--workers", "1", "--worker-class", "gthread", "--threads", "4"]
    command += ["--pythonpath", str(ROOT), "bench.wsgi_bench_app:create_app()"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, pass_fds=(listener.fileno(),), stdout=out, stderr=out)
    listener.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while fetch(f"{url}/flask/sse?n=1") <= 0:
            if time.monotonic() > deadline:
                raise RuntimeError(log.read_text())
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def fetch(url: str) -> int:
    """Bytes of the body curl read (-1 on failure)."""
    result = subprocess.run(
        ["curl", "-s", "-o", os.devnull, "-w", "%{size_download} %{http_code}", url],
        capture_output=True,
        text=True,
        check=False,
    )
    size, _, code = result.stdout.partition(" ")
    return int(size) if result.returncode == 0 and code == "200" else -1


def measure(benchmark: Any, url: str) -> None:
    size = benchmark.pedantic(lambda: fetch(url), rounds=5, iterations=1, warmup_rounds=1)
    assert size > COUNT
    benchmark.extra_info["per_s"] = round(COUNT / benchmark.stats.stats.mean)


@pytest.mark.benchmark(group="wsgi-sse-backlog")
@pytest.mark.parametrize("side", ["streamfx", "streamfx-unbatched", "flask"])
def test_sse_backlog(benchmark: Any, base_url: str, side: str) -> None:
    measure(benchmark, f"{base_url}/{side}/sse?n={COUNT}")


@pytest.mark.benchmark(group="wsgi-ndjson-export")
@pytest.mark.parametrize("side", ["streamfx", "flask"])
def test_ndjson_export(benchmark: Any, base_url: str, side: str) -> None:
    measure(benchmark, f"{base_url}/{side}/ndjson?n={COUNT}")
