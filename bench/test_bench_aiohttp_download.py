"""pytest-benchmark: one 64 MB download through `to_aiohttp(download(path))` (sendfile)
and through aiohttp's own `web.FileResponse`, plus the chunked path against a plain
aiohttp `StreamResponse`, from one server process in the same run (`make bench`).

The server and the client are `load_download_aiohttp`'s; run that script for medians
and paired ratios in one table.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from bench.load_download_aiohttp import ROUTES, fetch, make_file, start_server, stop_server

SIZE_MB = 64


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with tempfile.TemporaryDirectory() as directory:
        server, bound = start_server(make_file(directory, SIZE_MB))
        try:
            yield bound
        finally:
            stop_server(server)


@pytest.mark.parametrize("route", ROUTES)
def test_download_64mb(benchmark: Any, port: int, route: str) -> None:
    benchmark.group = "64 MB download, aiohttp server"
    buffer = bytearray(2**20)
    fetch(port, route, buffer)  # warm up
    _, nbytes = benchmark.pedantic(fetch, args=(port, route, buffer), rounds=15, iterations=1)
    assert nbytes == SIZE_MB * 2**20
