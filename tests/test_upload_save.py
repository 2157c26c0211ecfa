"""Tests for saving a part to a file (streamfx/_upload/save.py, ``await part.save()``):
the file is complete or absent, never outside its directory, written without holding
the event loop and with at most two buffers in flight."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import streamfx._upload.save
from streamfx import Part, UploadTooLarge, parse_multipart
from streamfx._upload.save import WRITE_SIZE
from tests._loop_ticker import Ticker
from tests._upload_bodies import CONTENT_TYPE, LIMITS, Body, Spec, closing, encode, raw_part

CONTENT = bytes(range(256)) * 4096  # 1 MiB


async def save_first(
    data: bytes, destination: Path | str | None, *, chunk: int = 64 << 10, **options: Any
) -> Path:
    limits = {"max_file_size": options.pop("max_file_size", 200 << 20)}
    body = Body(data, chunk)
    async with parse_multipart(
        body, CONTENT_TYPE, **{**LIMITS, "max_size": 300 << 20, **limits}
    ) as parts:
        part = await anext(parts)
        return await part.save(destination, **options)


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


async def test_a_file_is_saved_in_a_directory_under_its_clean_name(tmp_path: Path) -> None:
    path = await save_first(encode([Spec("f", CONTENT, "../../holiday.png")]), tmp_path)
    assert path == tmp_path / "holiday.png"
    assert path.read_bytes() == CONTENT
    assert listing(tmp_path) == ["holiday.png"]


async def test_a_file_is_saved_at_a_given_path(tmp_path: Path) -> None:
    target = tmp_path / "chosen.bin"
    assert await save_first(encode([Spec("f", CONTENT, "x.png")]), str(target)) == target
    assert target.read_bytes() == CONTENT
    assert listing(tmp_path) == ["chosen.bin"]


async def test_without_a_destination_a_new_temporary_file_is_the_callers(tmp_path: Path) -> None:
    path = await save_first(encode([Spec("f", b"abc", "x.png")]), None)
    try:
        assert path.parent == Path(tempfile.gettempdir())
        assert path.read_bytes() == b"abc"
    finally:
        path.unlink()


async def test_an_existing_file_is_kept_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"old")
    data = encode([Spec("f", b"new", "a.txt")])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        await save_first(data, tmp_path)
    assert (tmp_path / "a.txt").read_bytes() == b"old"
    assert listing(tmp_path) == ["a.txt"]
    assert await save_first(data, tmp_path, overwrite=True) == tmp_path / "a.txt"
    assert (tmp_path / "a.txt").read_bytes() == b"new"
    assert listing(tmp_path) == ["a.txt"]


async def test_a_file_created_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    """The name is taken atomically (a hard link) once the content is complete."""

    async def body() -> AsyncIterator[bytes]:
        data = encode([Spec("f", b"new", "a.txt")])
        yield data[:100]
        (tmp_path / "a.txt").write_bytes(b"raced")
        yield data[100:]

    async with parse_multipart(body(), CONTENT_TYPE, **LIMITS) as parts:
        part = await anext(parts)
        with pytest.raises(FileExistsError):
            await part.save(tmp_path)
    assert (tmp_path / "a.txt").read_bytes() == b"raced"
    assert listing(tmp_path) == ["a.txt"]


async def test_overwrite_replaces_a_symlink_never_writes_through_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "a.txt").symlink_to(outside)
    await save_first(encode([Spec("f", b"new", "a.txt")]), uploads, overwrite=True)
    assert not (uploads / "a.txt").is_symlink()
    assert (uploads / "a.txt").read_bytes() == b"new"
    assert outside.read_bytes() == b"keep me"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("../../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/etc/cron.d/evil", "evil"),
        ("C:\\boot.ini", "boot.ini"),
        ("a/../../b.txt", "b.txt"),
        ("evil.php\x01.png", "evil.php_.png"),
        (".htaccess", None),  # hidden: a generated name
        ("..", None),
        ("", None),
        ("x" * 300, None),  # longer than a file name may be
    ],
)
async def test_a_clients_name_never_leaves_the_directory(
    tmp_path: Path, filename: str, expected: str | None
) -> None:
    disposition = b'form-data; name="f"; filename="' + filename.encode() + b'"'
    data = raw_part(b"Content-Disposition: " + disposition + b"\r\n", b"x") + closing()
    path = await save_first(data, tmp_path)
    assert path.parent == tmp_path
    assert "/" not in path.name and path.name not in (".", "..")
    if expected is None:
        assert path.name.startswith("upload-")
        assert len(path.name) == len("upload-") + 32
    else:
        assert path.name == expected
    assert listing(tmp_path) == [path.name]


# -- nothing left behind -----------------------------------------------------------------


async def test_a_file_refused_midway_leaves_nothing(tmp_path: Path) -> None:
    data = encode([Spec("f", CONTENT * 3, "big.bin")])
    with pytest.raises(UploadTooLarge, match="max_file_size"):
        await save_first(data, tmp_path, max_file_size=len(CONTENT) * 2)
    assert listing(tmp_path) == []


async def test_a_failing_body_leaves_nothing(tmp_path: Path) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield encode([Spec("f", CONTENT, "a.bin")])[: 600 << 10]
        raise ConnectionResetError("client went away")

    async with parse_multipart(body(), CONTENT_TYPE, **LIMITS) as parts:
        part = await anext(parts)
        with pytest.raises(ConnectionResetError):
            await part.save(tmp_path)
    assert listing(tmp_path) == []


async def test_a_cancelled_save_leaves_nothing(tmp_path: Path) -> None:
    half = asyncio.Event()
    gate = asyncio.Event()
    data = encode([Spec("f", CONTENT * 2, "a.bin")])

    async def body() -> AsyncIterator[bytes]:
        for offset in range(0, len(data) // 2, 64 << 10):
            yield data[offset : offset + (64 << 10)]
        half.set()
        await gate.wait()
        yield data[len(data) // 2 :]

    async with parse_multipart(body(), CONTENT_TYPE, **LIMITS, max_file_size=4 << 20) as parts:
        part = await anext(parts)
        task = asyncio.create_task(part.save(tmp_path))
        halfway = asyncio.create_task(half.wait())
        await asyncio.wait([task, halfway], return_when=asyncio.FIRST_COMPLETED)
        assert not task.done(), task
        await halfway
        assert [name[-12:] for name in listing(tmp_path)] == [".upload-part"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert listing(tmp_path) == []


async def test_a_missing_directory_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await save_first(encode([Spec("f", b"x", "a.bin")]), tmp_path / "no" / "such.bin")
    assert listing(tmp_path) == []


# -- the loop and the memory ---------------------------------------------------------------


async def test_the_loop_keeps_running_during_a_large_save(tmp_path: Path) -> None:
    data = encode([Spec("f", CONTENT * 64, "big.bin")])
    async with Ticker() as ticker:
        path = await save_first(data, tmp_path, chunk=1 << 20)
    assert path.stat().st_size == len(CONTENT) * 64
    assert ticker.turns > 10
    assert ticker.longest < 0.05


async def test_at_most_two_buffers_are_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = 0
    real_write_all = streamfx._upload.save._write_all

    def counting(descriptor: int, data: bytearray) -> None:
        nonlocal written
        real_write_all(descriptor, data)
        written += len(data)

    monkeypatch.setattr(streamfx._upload.save, "_write_all", counting)
    size = len(CONTENT) * 16
    sent = 0
    most_ahead = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent, most_ahead
        data = encode([Spec("f", CONTENT * 16, "big.bin")])
        for offset in range(0, len(data), 64 << 10):
            chunk = data[offset : offset + (64 << 10)]
            sent += len(chunk)
            most_ahead = max(most_ahead, sent - written)
            yield chunk

    limits = {**LIMITS, "max_size": 1 << 30, "max_file_size": 1 << 30}
    async with parse_multipart(body(), CONTENT_TYPE, **limits) as parts:
        part: Part = await anext(parts)
        path = await part.save(tmp_path, overwrite=False)
    assert path.stat().st_size == size
    # one buffer being written, one being filled, a body chunk and the scanner's piece
    assert most_ahead <= 2 * WRITE_SIZE + 4 * (64 << 10)
