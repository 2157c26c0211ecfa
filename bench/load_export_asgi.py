"""Load script: one export download through uvicorn, streamfx against the common recipe.

One uvicorn process (uvloop + httptools) serves the same ROWS rows, for each format:

- ``streamfx``: ``to_asgi(export(source(), fmt))`` with the defaults (suspend 128; for
  CSV the formula guard is on);
- ``recipe``: Starlette's ``StreamingResponse`` over the recipe of the Django and
  Starlette docs: a ``csv.writer`` over a pseudo-buffer whose ``write`` returns the
  line, one chunk per row; ``json.dumps`` per row for NDJSON (``"["``, ``","``-joined
  rows and ``"]"`` for a JSON array).

Both read the same async generator of rows (lists for CSV, dicts for the JSON
formats) with nothing to wait for. The client is a raw socket in this process that
reads the whole chunked body; the first (warm-up) download of each contender is
de-chunked and parsed to check every row arrived. Contenders run ROUNDS times,
interleaved; the table shows the median rows/s and the ratio to the recipe.

Run: ``.venv/bin/pip install -e '.[bench]'`` then
``.venv/bin/python -m bench.load_export_asgi`` (``--rows``, ``--rounds``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import socket
import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench._uvicorn import fetch_chunked, run_uvicorn, start_server, wait_ready

ROWS = 100_000
ROUNDS = 5
FORMATS = ("csv", "ndjson", "json")
CONTENDERS = ("streamfx", "recipe")
FIELDS = ["id", "name", "email", "score", "active"]


def row(index: int) -> list[Any]:
    return [index, f"User {index}", f"user{index}@example.com", index * 0.25, index % 3 == 0]


# -- the server ------------------------------------------------------------------------


def build_app(rows: int) -> Any:
    from starlette.responses import StreamingResponse

    from streamfx import export
    from streamfx.adapters.asgi import to_asgi

    async def list_rows() -> AsyncIterator[list[Any]]:
        for index in range(rows):
            yield row(index)

    async def dict_rows() -> AsyncIterator[dict[str, Any]]:
        for index in range(rows):
            yield dict(zip(FIELDS, row(index), strict=True))

    class Echo:
        def write(self, value: str) -> str:
            return value

    async def recipe_csv() -> AsyncIterator[str]:
        writer = csv.writer(Echo())
        yield writer.writerow(FIELDS)
        async for item in list_rows():
            yield writer.writerow(item)

    async def recipe_ndjson() -> AsyncIterator[str]:
        async for item in dict_rows():
            yield json.dumps(item) + "\n"

    async def recipe_json() -> AsyncIterator[str]:
        yield "["
        first = True
        async for item in dict_rows():
            yield json.dumps(item) if first else "," + json.dumps(item)
            first = False
        yield "]"

    recipes = {"csv": recipe_csv, "ndjson": recipe_ndjson, "json": recipe_json}
    media_types = {"csv": "text/csv", "ndjson": "application/x-ndjson", "json": "application/json"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        _, fmt, contender = scope["path"].split("/")
        if contender == "streamfx":
            if fmt == "csv":
                response = export(list_rows(), "csv", fields=FIELDS)
            else:
                response = export(dict_rows(), fmt)
            await to_asgi(response)(scope, receive, send)
        else:
            streaming = StreamingResponse(recipes[fmt](), media_type=media_types[fmt])
            await streaming(scope, receive, send)

    return app


def serve(fd: int, rows: int) -> None:
    run_uvicorn(build_app(rows), fd)


# -- the client ------------------------------------------------------------------------


def dechunk(response: bytes) -> tuple[bytes, int]:
    """The body of a chunked HTTP/1.1 response and its number of chunks."""
    head, _, rest = response.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        raise RuntimeError(f"not a chunked response: {head!r}")
    body = bytearray()
    chunks = 0
    position = 0
    while True:
        line_end = rest.index(b"\r\n", position)
        size = int(rest[position:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(body), chunks
        start = line_end + 2
        body += rest[start : start + size]
        chunks += 1
        position = start + size + 2


def count_rows(fmt: str, body: bytes) -> int:
    if fmt == "csv":
        return len(list(csv.reader(io.StringIO(body.decode(), newline="")))) - 1
    if fmt == "ndjson":
        return len([json.loads(line) for line in body.splitlines()])
    return len(json.loads(body))


def main() -> None:
    parser = argparse.ArgumentParser(description="export load test through uvicorn")
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--formats", nargs="*", default=list(FORMATS))
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(args.serve_fd, args.rows)
        return

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = start_server("bench.load_export_asgi", listener, "--rows", str(args.rows))
    paths = [(fmt, name) for fmt in args.formats for name in CONTENDERS]
    rates: dict[tuple[str, str], list[float]] = {path: [] for path in paths}
    chunk_counts: dict[tuple[str, str], int] = {}
    try:
        wait_ready(port)
        for fmt, name in paths:  # warm-up, and a check that every row arrives
            _, response = fetch_chunked(port, f"/{fmt}/{name}")
            body, chunk_counts[fmt, name] = dechunk(response)
            count = count_rows(fmt, body)
            if count != args.rows:
                raise RuntimeError(f"{fmt}/{name}: {count} rows received, {args.rows} sent")
        for _ in range(args.rounds):
            for fmt, name in paths:
                seconds, _ = fetch_chunked(port, f"/{fmt}/{name}")
                rates[fmt, name].append(args.rows / seconds)
    finally:
        server.terminate()
        server.wait(10)
        listener.close()

    if args.json:
        samples = {f"{fmt}/{name}": values for (fmt, name), values in rates.items()}
        counts = {f"{fmt}/{name}": count for (fmt, name), count in chunk_counts.items()}
        output = {"rows": args.rows, "rows_per_s": samples, "chunks": counts}
        args.json.write_text(json.dumps(output))
    print(
        f"\n{args.rows} rows, one client, uvicorn (uvloop, httptools), "
        f"median of {args.rounds} rounds"
    )
    print(f"{'format':<8}{'contender':<12}{'rows/s':>12}{'chunks':>10}{'x recipe':>10}")
    for fmt in args.formats:
        base = statistics.median(rates[fmt, "recipe"])
        for name in CONTENDERS:
            median = statistics.median(rates[fmt, name])
            chunks = chunk_counts[fmt, name]
            print(f"{fmt:<8}{name:<12}{median:>12,.0f}{chunks:>10,}{median / base:>9.1f}x")


if __name__ == "__main__":
    main()
