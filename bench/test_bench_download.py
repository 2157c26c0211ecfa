"""Download throughput: MB/s of iterating `download()`'s body over a 64 MiB file, side by
side with the usual hand-written recipe (a ``to_thread`` read loop, 64 KiB per read).

Run with ``make bench`` (or ``pytest bench/test_bench_download.py --benchmark-enable``).
Each round reads the whole file once; ``extra_info["MB/s"]`` holds the throughput.
The file is in the page cache after the first round, so this measures the library's
overhead (thread hops, buffering, metrics), not the disk.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from streamfx import download

SIZE = 64 * 1024 * 1024
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "big.bin"
    block = os.urandom(1024 * 1024)
    with path.open("wb") as file:
        for _ in range(SIZE // len(block)):
            file.write(block)
    return path


async def naive_body(path: Path) -> AsyncIterator[bytes]:
    """The common recipe: read 64 KiB at a time in a worker thread, yield each chunk."""
    file = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            yield chunk
    finally:
        file.close()


async def drain(body: AsyncIterator[bytes]) -> int:
    total = 0
    async for chunk in body:
        total += len(chunk)
    return total


def run(benchmark: Any, make_body: Callable[[], AsyncIterator[bytes]]) -> None:
    def once() -> int:
        return asyncio.run(drain(make_body()))

    total = benchmark.pedantic(once, rounds=5, iterations=1, warmup_rounds=1)
    assert total == SIZE
    benchmark.extra_info["MB/s"] = round(SIZE / 1e6 / benchmark.stats.stats.mean, 1)


def test_download_body(benchmark: Any, big_file: Path) -> None:
    def body() -> AsyncIterator[bytes]:
        return aiter(download(big_file).body)

    run(benchmark, body)


def test_naive_to_thread_loop(benchmark: Any, big_file: Path) -> None:
    run(benchmark, lambda: naive_body(big_file))
