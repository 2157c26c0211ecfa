"""Upload parsing throughput: MB/s of `parse_multipart` side by side with the peers
doing the same job on the same bodies, in the same run.

Run: ``make bench`` or
``.venv/bin/python -m pytest bench/test_bench_multipart.py --benchmark-enable -q``.

Two bodies, each fed in 64 KiB chunks as a server delivers them:

- ``big``: one 32 MiB file and two small fields;
- ``fields``: 2,000 fields of 100 bytes (the per-part cost).

Peers:

- ``raw_parser``: python-multipart's `MultipartParser` with callbacks that only count
  bytes - the floor, what parsing costs with no hand-over, limits or part objects;
- ``parse_form``: python-multipart's own all-in-one `parse_form` (fields in memory,
  files in memory up to 1 MiB, then in a temporary file);
- ``starlette``: Starlette's `MultiPartParser` (what ``await request.form()`` runs:
  fields in memory, files spooled to temporary files through a thread pool).

streamfx streams each part's content to a consumer that counts the bytes; the peers
that store content do more work, which is the point of streaming, and is why the raw
parser is the fair floor. ``extra_info["MB/s"]`` holds the throughput.
"""

from __future__ import annotations

import io
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import pytest
from python_multipart import MultipartParser, parse_form
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

from streamfx import parse_multipart

BOUNDARY = "----benchBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
CHUNK = 64 * 1024
Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


def part(name: str, content: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}"
    if filename is not None:
        head += f'; filename="{filename}"\r\nContent-Type: application/octet-stream'
    return head.encode() + b"\r\n\r\n" + content + b"\r\n"


def big_body() -> bytes:
    block = bytes(range(256)) * 4096  # 1 MiB with CR, LF and '-' in it
    return (
        part("title", b"holiday")
        + part("file", block * 32, "video.bin")
        + part("note", b"x" * 100)
        + f"--{BOUNDARY}--\r\n".encode()
    )


def fields_body() -> bytes:
    fields = b"".join(part(f"field{i}", b"v" * 100) for i in range(2000))
    return fields + f"--{BOUNDARY}--\r\n".encode()


BODIES = {"big": big_body(), "fields": fields_body()}


async def chunks(data: bytes) -> AsyncGenerator[bytes, None]:
    for offset in range(0, len(data), CHUNK):
        yield data[offset : offset + CHUNK]


async def with_streamfx(data: bytes) -> int:
    total = 0
    async with parse_multipart(
        chunks(data), CONTENT_TYPE, max_size=len(data), max_part_size=len(data), max_parts=10_000
    ) as parts:
        async for upload in parts:
            async for piece in upload:
                total += len(piece)
    return total


async def with_raw_parser(data: bytes) -> int:
    total = 0

    def on_part_data(chunk: bytes, start: int, end: int) -> None:
        nonlocal total
        total += end - start

    parser = MultipartParser(BOUNDARY, {"on_part_data": on_part_data})
    async for chunk in chunks(data):
        parser.write(chunk)
    parser.finalize()
    return total


async def with_parse_form(data: bytes) -> int:
    total = 0

    def on_field(field: Any) -> None:
        nonlocal total
        total += len(field.value or b"")

    def on_file(file: Any) -> None:
        nonlocal total
        total += file.size
        file.close()

    headers = {"Content-Type": CONTENT_TYPE.encode(), "Content-Length": str(len(data)).encode()}
    parse_form(headers, io.BytesIO(data), on_field, on_file, chunk_size=CHUNK)
    return total


async def with_starlette(data: bytes) -> int:
    parser = MultiPartParser(
        Headers({"content-type": CONTENT_TYPE}),
        chunks(data),
        max_fields=10_000,
        max_files=10_000,
        max_part_size=len(data),
    )
    form = await parser.parse()
    total = 0
    for _, value in form.multi_items():
        if isinstance(value, UploadFile):
            total += value.size or 0
            await value.close()
        else:
            total += len(value.encode())
    return total


CONTENDERS: dict[str, Callable[[bytes], Awaitable[int]]] = {
    "streamfx": with_streamfx,
    "raw_parser": with_raw_parser,
    "parse_form": with_parse_form,
    "starlette": with_starlette,
}


@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize("contender", list(CONTENDERS))
def test_multipart_throughput(benchmark: Any, run: Runner, body: str, contender: str) -> None:
    benchmark.group = f"multipart {body}"
    data = BODIES[body]
    parse = CONTENDERS[contender]
    expected = sum(len(c) for c in (b"holiday", b"x" * 100)) + 32 * 1024 * 1024
    if body == "fields":
        expected = 2000 * 100

    total = benchmark.pedantic(lambda: run(lambda: parse(data)), rounds=10, warmup_rounds=1)
    assert total == expected
    benchmark.extra_info["MB/s"] = round(len(data) / 1e6 / benchmark.stats.stats.mean, 1)
