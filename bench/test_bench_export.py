"""Export throughput: `streamfx.export` against the common streaming recipe, same run.

The recipe is what the Django and Starlette docs suggest: a `csv.writer` over a
pseudo-buffer whose ``write`` returns the line, one chunk per row; ``json.dumps`` per
row for NDJSON (and for a JSON array, a ``"["``, ``","``-prefixed rows, ``"]"``).
Both sides read the same async source of 20,000 rows and emit UTF-8 bytes, on the
module's event loop (``bench/conftest.py``).

Two consumers:

- ``body``: the body iterator alone (the encoders and the per-chunk Python overhead);
- ``socket``: every chunk written to a real loopback TCP connection
  (``writer.write(chunk)`` then ``await writer.drain()``), with a reader draining the
  other end: the per-write cost every server pays, which is what the issue's
  "through a server" figures are made of.

The ``*-nulls`` groups use the same rows with every other ``email`` set to None (a
NULL column): a NaN is written as ``null`` like None (``streamfx._response.json``), so
these rows cost what the others do; the group is kept to show it.

Run: ``.venv/bin/python -m pytest bench/test_bench_export.py --benchmark-enable -q``.
Rows/s = 20,000 / mean time; compare rows of the same group.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from streamfx import StreamResponse, export

ROWS = 20_000
DICT_ROWS: list[dict[str, Any]] = [
    {
        "id": i,
        "name": f"User {i}",
        "email": f"user{i}@example.com",
        "score": i * 0.25,
        "active": i % 3 == 0,
    }
    for i in range(ROWS)
]
LIST_ROWS: list[list[Any]] = [list(row.values()) for row in DICT_ROWS]
NULL_ROWS: list[dict[str, Any]] = [  # every other email is NULL, as a database returns it
    {**row, "email": None} if i % 2 else row for i, row in enumerate(DICT_ROWS)
]
FIELDS = list(DICT_ROWS[0])

Body = Callable[[], AsyncIterator[bytes]]


async def source(rows: list[Any]) -> AsyncIterator[Any]:
    for row in rows:
        yield row


# -- the common recipe ------------------------------------------------------------------


class Echo:
    """The pseudo-buffer of the recipe: ``write`` returns what it was given."""

    def write(self, value: str) -> str:
        return value


async def recipe_csv() -> AsyncIterator[bytes]:
    writer = csv.writer(Echo())
    async for row in source(LIST_ROWS):
        yield writer.writerow(row).encode()


async def recipe_csv_dicts() -> AsyncIterator[bytes]:
    writer = csv.DictWriter(Echo(), FIELDS)
    yield writer.writeheader().encode()
    async for row in source(DICT_ROWS):
        yield writer.writerow(row).encode()


async def recipe_ndjson(rows: list[dict[str, Any]] = DICT_ROWS) -> AsyncIterator[bytes]:
    async for row in source(rows):
        yield (json.dumps(row) + "\n").encode()


async def recipe_json(rows: list[dict[str, Any]] = DICT_ROWS) -> AsyncIterator[bytes]:
    yield b"["
    first = True
    async for row in source(rows):
        yield (json.dumps(row) if first else "," + json.dumps(row)).encode()
        first = False
    yield b"]"


# -- streamfx ---------------------------------------------------------------------------


def body(response: StreamResponse) -> AsyncIterator[bytes]:
    return aiter(response.body)


def streamfx_csv() -> AsyncIterator[bytes]:
    return body(export(source(LIST_ROWS), "csv", fields=FIELDS))


def streamfx_csv_unguarded() -> AsyncIterator[bytes]:
    return body(export(source(LIST_ROWS), "csv", fields=FIELDS, csv_formula_guard=False))


def streamfx_csv_dicts() -> AsyncIterator[bytes]:
    return body(export(source(DICT_ROWS), "csv"))


def streamfx_ndjson() -> AsyncIterator[bytes]:
    return body(export(source(DICT_ROWS), "ndjson"))


def streamfx_json() -> AsyncIterator[bytes]:
    return body(export(source(DICT_ROWS), "json"))


def streamfx_ndjson_nulls() -> AsyncIterator[bytes]:
    return body(export(source(NULL_ROWS), "ndjson"))


def streamfx_json_nulls() -> AsyncIterator[bytes]:
    return body(export(source(NULL_ROWS), "json"))


CASES: dict[str, list[tuple[str, Body]]] = {
    "csv": [
        ("recipe", recipe_csv),
        ("streamfx", streamfx_csv),
        ("streamfx-unguarded", streamfx_csv_unguarded),
    ],
    "csv-dicts": [("recipe", recipe_csv_dicts), ("streamfx", streamfx_csv_dicts)],
    "ndjson": [("recipe", recipe_ndjson), ("streamfx", streamfx_ndjson)],
    "json": [("recipe", recipe_json), ("streamfx", streamfx_json)],
    "ndjson-nulls": [
        ("recipe", lambda: recipe_ndjson(NULL_ROWS)),
        ("streamfx", streamfx_ndjson_nulls),
    ],
    "json-nulls": [("recipe", lambda: recipe_json(NULL_ROWS)), ("streamfx", streamfx_json_nulls)],
}
PARAMS = [
    pytest.param(fmt, make, id=f"{fmt}-{label}")
    for fmt, entries in CASES.items()
    for label, make in entries
]


# -- consumers --------------------------------------------------------------------------


async def count_bytes(chunks: AsyncIterator[bytes]) -> int:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
    return total


@pytest.mark.parametrize(("fmt", "make"), PARAMS)
def test_body(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, fmt: str, make: Body
) -> None:
    benchmark.group = f"export {fmt}: body iterator, {ROWS} rows"
    total = benchmark(lambda: loop.run_until_complete(count_bytes(make())))
    assert total > ROWS * 20


class Loopback:
    """A real TCP connection on 127.0.0.1 whose far end reads and discards."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.received = 0
        self.finished: asyncio.Future[None] = loop.create_future()

        async def discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(1 << 16):
                self.received += len(data)
            writer.close()
            await writer.wait_closed()
            self.finished.set_result(None)

        self.server = loop.run_until_complete(asyncio.start_server(discard, "127.0.0.1", 0))
        port = self.server.sockets[0].getsockname()[1]
        _, self.writer = loop.run_until_complete(asyncio.open_connection("127.0.0.1", port))

    async def send(self, chunks: AsyncIterator[bytes]) -> int:
        writer = self.writer
        total = 0
        async for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            total += len(chunk)
        return total

    def close(self) -> None:
        self.writer.close()
        self.loop.run_until_complete(self.writer.wait_closed())
        self.loop.run_until_complete(self.finished)
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())


@pytest.mark.parametrize(("fmt", "make"), PARAMS)
def test_socket(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, fmt: str, make: Body
) -> None:
    benchmark.group = f"export {fmt}: chunks written to a loopback socket, {ROWS} rows"
    connection = Loopback(loop)
    try:
        total = benchmark(lambda: loop.run_until_complete(connection.send(make())))
    finally:
        connection.close()
    assert total > ROWS * 20
    assert connection.received >= total
    assert connection.received % total == 0  # every byte of every run arrived
