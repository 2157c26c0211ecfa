"""`download`: files (validators, conditionals, ranges, HEAD, root) and byte streams."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from starlette.applications import Starlette
from starlette.datastructures import Headers as StarletteHeaders
from starlette.requests import Request
from starlette.routing import Route

import streamfx._download.file_body as file_body
from streamfx import (
    BufferPolicy,
    DownloadError,
    DownloadNotFound,
    FileRange,
    PathOutsideRoot,
    StreamResponse,
    download,
)
from streamfx._download.ranges import ByteRange
from streamfx.adapters.aiohttp import to_aiohttp
from streamfx.adapters.asgi import to_asgi
from streamfx.testing import capture_metrics
from tests._servers import serve
from tests.byteranges_parser import parse_byteranges

CHUNK = 64 * 1024


@pytest.fixture
def data() -> bytes:
    return os.urandom(3 * CHUNK + 1234)


@pytest.fixture
def path(tmp_path: Path, data: bytes) -> Path:
    target = tmp_path / "report.pdf"
    target.write_bytes(data)
    return target


async def chunks_of(response: StreamResponse) -> list[bytes]:
    return [chunk async for chunk in response.body]


async def body_of(response: StreamResponse) -> bytes:
    return b"".join(await chunks_of(response))


def headers_of(response: StreamResponse) -> dict[str, str]:
    names = [name.lower() for name, _ in response.headers]
    assert len(names) == len(set(names)), f"a header repeats: {response.headers}"
    return {name.lower(): value for name, value in response.headers}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- a whole file ------------------------------------------------------------------


async def test_full_file(path: Path, data: bytes) -> None:
    response = download(path)
    headers = headers_of(response)
    assert response.status == 200
    assert headers["content-type"] == "application/pdf"
    assert headers["content-length"] == str(len(data))
    assert headers["accept-ranges"] == "bytes"
    stat = os.stat(path)
    assert headers["etag"] == f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    assert headers["last-modified"].endswith(" GMT")
    assert "content-disposition" not in headers
    assert response.file == FileRange(path, 0, len(data))
    chunks = await chunks_of(response)
    assert b"".join(chunks) == data
    # one body chunk per 64 KiB read: never joined into bigger chunks
    assert [len(chunk) for chunk in chunks] == [CHUNK, CHUNK, CHUNK, 1234]


async def test_filename_and_content_type(path: Path) -> None:
    response = download(path, filename="résumé.csv")
    headers = headers_of(response)
    assert headers["content-type"] == "text/csv"
    assert headers["content-disposition"] == (
        "attachment; filename=\"resume.csv\"; filename*=UTF-8''r%C3%A9sum%C3%A9.csv"
    )
    given_type = download(path, content_type="application/x-custom")
    assert given_type.header("content-type") == "application/x-custom"
    unknown = path.with_name("blob.unknownext")
    unknown.write_bytes(b"x")
    assert download(unknown).header("content-type") == "application/octet-stream"
    archive = path.with_name("a.tar.gz")
    archive.write_bytes(b"x")
    assert download(archive).header("content-type") == "application/gzip"


# -- any filename gives a response (defect 5) -------------------------------------


@pytest.mark.parametrize(
    ("filename", "disposition"),
    [
        ("a\r\nSet-Cookie: x=1.txt", 'attachment; filename="aSet-Cookie: x=1.txt"'),
        ("report\x00.pdf", 'attachment; filename="report.pdf"'),
        ("tab\there.pdf", 'attachment; filename="tabhere.pdf"'),
        ("", 'attachment; filename="download"'),
        ("invoice\u202egnp.exe", 'attachment; filename="invoicegnp.exe"'),
        ("../../etc/passwd", 'attachment; filename=".._.._etc_passwd"'),
        ("\udc80.txt", "attachment; filename=\"download.txt\"; filename*=UTF-8''%EF%BF%BD.txt"),
        ("a" * 10_000 + ".pdf", f'attachment; filename="{"a" * 251}.pdf"'),
    ],
)
async def test_a_filename_that_cannot_be_sent_as_it_is_is_rewritten(
    path: Path, data: bytes, filename: str, disposition: str
) -> None:
    for response in (
        download(path, filename=filename),
        download(stream([b"x"]), filename=filename),
    ):
        assert response.header("content-disposition") == disposition
        await response.aclose()


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    filename=st.text(
        st.characters(codec=None, exclude_categories=()) | st.sampled_from("\udc80\u202e/")
    )
)
def test_any_filename_gives_a_latin1_header(path: Path, filename: str) -> None:
    response = download(path, filename=filename)
    for name, value in response.headers:
        name.encode("latin-1")
        value.encode("latin-1")
        assert value.isprintable()
    assert response.header("content-type")


async def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    response = download(empty)
    assert response.status == 200
    assert response.header("content-length") == "0"
    assert await body_of(response) == b""


async def test_reads_happen_in_worker_threads(
    path: Path, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[int] = set()
    original = file_body._ThreadedFile._read

    def recording(self: Any, *args: Any) -> list[bytes]:
        threads.add(threading.get_ident())
        return original(self, *args)

    monkeypatch.setattr(file_body._ThreadedFile, "_read", recording)
    assert await body_of(download(path)) == data
    assert threads
    assert threading.get_ident() not in threads


async def test_metrics_are_reported(path: Path, data: bytes) -> None:
    with capture_metrics() as metrics:
        await body_of(download(path))
    assert metrics.items["download", ""] == 4
    assert metrics.bytes["download", ""] == len(data)
    assert metrics.outcomes["download", "", "completed"] == 1
    assert metrics.active["download", ""] == 0


async def test_name_labels_the_metrics(path: Path, data: bytes) -> None:
    with capture_metrics() as metrics:
        await body_of(download(path, name="reports"))
        await body_of(download(path, name="reports").for_request("GET", [("Range", "bytes=0-9")]))
        await body_of(download(stream([b"ab", b"c"]), name="live"))
    assert metrics.bytes["download", "reports"] == len(data) + 10
    assert metrics.outcomes["download", "reports", "completed"] == 2
    assert metrics.items["download", "live"] == 2
    assert metrics.bytes["download", "live"] == 3
    assert metrics.outcomes["download", "live", "completed"] == 1
    assert ("download", "") not in metrics.items


# -- request dependence ------------------------------------------------------------


async def test_respond_to_is_set_only_without_request_headers(path: Path) -> None:
    plain = download(path)
    assert plain.respond_to is not None
    ranged = plain.for_request("GET", [("Range", "bytes=0-9")])
    assert ranged.status == 206
    direct = download(path, request_headers=[("range", "bytes=0-9")])
    assert direct.status == 206
    assert direct.respond_to is None
    assert direct.for_request("GET", []) is direct


# -- request_headers in any form (defect 4) ----------------------------------------


def etag_of(path: Path) -> str:
    etag = download(path).header("etag")
    assert etag is not None
    return etag


Pairs = list[tuple[str, str]]
HEADER_FORMS: dict[str, Callable[[Pairs], Any]] = {
    "dict": dict,
    "str pairs": list,
    "iterator": iter,
    "bytes pairs": lambda pairs: [(n.encode(), v.encode()) for n, v in pairs],
    "bytes lists": lambda pairs: [[n.encode(), v.encode()] for n, v in pairs],
    "starlette": lambda pairs: StarletteHeaders(raw=[(n.encode(), v.encode()) for n, v in pairs]),
    "multidict": lambda pairs: CIMultiDictProxy(CIMultiDict(pairs)),
}
"""Request headers in each form `download` accepts, built from ``(name, value)`` pairs."""
MULTI_LINE_FORMS = [form for form in HEADER_FORMS if form != "dict"]  # a dict has one line


@pytest.mark.parametrize("form", HEADER_FORMS)
async def test_request_headers_in_every_form(path: Path, data: bytes, form: str) -> None:
    make = HEADER_FORMS[form]
    ranged = download(path, request_headers=make([("Range", "bytes=0-9")]))
    assert ranged.status == 206
    assert await body_of(ranged) == data[:10]
    etag = etag_of(path)
    cached = download(path, request_headers=make([("IF-NONE-MATCH", etag)]))
    assert cached.status == 304
    plain = download(path, request_headers=make([]))
    assert plain.status == 200
    await plain.aclose()
    head = download(path, request_headers=make([("range", "bytes=0-9")]), method="HEAD")
    assert head.status == 200
    assert head.header("content-length") == str(len(data))


@pytest.mark.parametrize("form", MULTI_LINE_FORMS)
async def test_repeated_request_headers(path: Path, data: bytes, form: str) -> None:
    make = HEADER_FORMS[form]
    etag = etag_of(path)
    # If-None-Match is a list: its lines combine, and the second one matches
    lines = [("If-None-Match", '"other"'), ("if-none-match", etag)]
    assert download(path, request_headers=make(lines)).status == 304
    # a Range on two lines is malformed: ignored, the whole file is sent
    for lines in (
        [("Range", "bytes=0-9"), ("Range", "20-29")],
        [("Range", "bytes=0-9"), ("range", "bytes=0-9")],
    ):
        response = download(path, request_headers=make(lines))
        assert response.status == 200, lines
        assert await body_of(response) == data
    # so is a Range under a repeated If-Range, even when each line matches
    lines = [("Range", "bytes=0-9"), ("If-Range", etag), ("If-Range", etag)]
    response = download(path, request_headers=make(lines))
    assert response.status == 200
    assert await body_of(response) == data
    # a repeated If-Modified-Since is ignored
    modified = download(path).header("last-modified")
    assert modified is not None
    lines = [("If-Modified-Since", modified), ("If-Modified-Since", modified)]
    response = download(path, request_headers=make(lines))
    assert response.status == 200
    await response.aclose()


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ("range: bytes=0-9", "mapping or an iterable of \\(name, value\\) pairs, not str"),
        (b"range: bytes=0-9", "not bytes"),
        (42, "not int"),
        (object(), "not object"),
        ([("range",)], "must be a \\(name, value\\) pair"),
        (["ab"], "must be a \\(name, value\\) pair"),
        ([("range", "bytes=0-9", "x")], "must be a \\(name, value\\) pair"),
        ([("range", 5)], "value must be str or bytes, not int"),
        ([(None, "x")], "name must be str or bytes, not NoneType"),
        ({"range": ["bytes=0-9"]}, "value must be str or bytes, not list"),
    ],
)
def test_request_headers_of_any_other_shape_are_a_type_error(
    path: Path, headers: Any, match: str
) -> None:
    with pytest.raises(TypeError, match=match):
        download(path, request_headers=headers)
    with pytest.raises(TypeError, match=match):
        download(stream([b"x"]), request_headers=headers)


async def test_304_from_if_none_match_and_if_modified_since(path: Path) -> None:
    response = download(path, filename="r.pdf")
    etag = response.header("etag")
    modified = response.header("last-modified")
    assert etag is not None
    assert modified is not None
    for pairs in (
        [("If-None-Match", etag)],
        [("if-none-match", f"W/{etag}")],
        [("IF-NONE-MATCH", f'"nope", {etag}')],
        [("If-Modified-Since", modified)],
    ):
        not_modified = response.for_request("GET", pairs)
        assert not_modified.status == 304, pairs
        assert headers_of(not_modified) == {"etag": etag, "last-modified": modified}
        assert await body_of(not_modified) == b""
    # If-None-Match wins over If-Modified-Since
    changed = response.for_request(
        "GET", [("If-None-Match", '"nope"'), ("If-Modified-Since", modified)]
    )
    assert changed.status == 200
    await changed.aclose()
    assert response.for_request("HEAD", [("If-None-Match", etag)]).status == 304
    assert response.for_request("POST", [("If-None-Match", etag)]).status == 412
    assert response.for_request("GET", [("If-Match", '"nope"')]).status == 412


async def test_single_range(path: Path, data: bytes) -> None:
    size = len(data)
    for value, start, stop in [
        ("bytes=0-99", 0, 100),
        ("bytes=100000-", 100000, size),
        ("bytes=-500", size - 500, size),
        ("bytes=10-99999999", 10, size),
    ]:
        response = download(path).for_request("GET", [("Range", value)])
        headers = headers_of(response)
        assert response.status == 206, value
        assert headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
        assert headers["content-length"] == str(stop - start)
        assert headers["content-type"] == "application/pdf"
        assert response.file == FileRange(path, start, stop - start)
        chunks = await chunks_of(response)
        assert b"".join(chunks) == data[start:stop]
        assert max(map(len, chunks)) <= CHUNK


async def test_unsatisfiable_range_is_416(path: Path, data: bytes) -> None:
    for value in ("bytes=999999-", "bytes=-0", f"bytes={len(data)}-{len(data) + 5}"):
        response = download(path).for_request("GET", [("Range", value)])
        assert response.status == 416, value
        assert response.header("content-range") == f"bytes */{len(data)}"
        assert response.header("content-length") == "0"
        assert response.file is None
        assert await body_of(response) == b""


@pytest.mark.parametrize("value", ["bytes=5-2", "bytes=x-y", "lines=0-1", "bytes=", "bytes 0-1"])
async def test_malformed_range_is_ignored(path: Path, data: bytes, value: str) -> None:
    response = download(path).for_request("GET", [("Range", value)])
    assert response.status == 200
    assert response.header("content-range") is None
    assert await body_of(response) == data


async def test_if_range(path: Path, data: bytes) -> None:
    plain = download(path)
    etag, modified = plain.header("etag"), plain.header("last-modified")
    assert etag is not None
    assert modified is not None
    cases = [(etag, 206), (f"W/{etag}", 200), ('"stale"', 200), (modified, 206)]
    cases.append(("Mon, 01 Jan 1990 00:00:00 GMT", 200))
    for validator, status in cases:
        response = plain.for_request("GET", [("Range", "bytes=0-9"), ("If-Range", validator)])
        assert response.status == status, validator
        assert await body_of(response) == (data[:10] if status == 206 else data)


async def test_several_ranges_are_multipart_byteranges(path: Path, data: bytes) -> None:
    size = len(data)
    response = download(path).for_request("GET", [("Range", "bytes=0-9, 70000-140000, -100")])
    assert response.status == 206
    assert response.file is None
    content_type = response.header("content-type")
    assert content_type is not None
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=")[1]
    body = await body_of(response)
    assert response.header("content-length") == str(len(body))
    parts = parse_byteranges(body, boundary)
    expected = [(0, 10), (70000, 140001), (size - 100, size)]
    assert [(part_headers["content-range"], content) for part_headers, content in parts] == [
        (f"bytes {start}-{stop - 1}/{size}", data[start:stop]) for start, stop in expected
    ]
    assert all(headers["content-type"] == "application/pdf" for headers, _ in parts)
    again = download(path).for_request("GET", [("Range", "bytes=0-9,20-29")])
    assert again.header("content-type") != content_type  # a fresh random boundary
    await again.aclose()


async def test_overlapping_ranges_are_coalesced_into_one(path: Path, data: bytes) -> None:
    response = download(path).for_request("GET", [("Range", "bytes=50-99,0-59")])
    assert response.status == 206
    assert response.header("content-range") == f"bytes 0-99/{len(data)}"
    assert await body_of(response) == data[:100]


async def test_head_has_the_headers_and_no_body(path: Path) -> None:
    get = download(path, filename="r.pdf")
    head = get.for_request("HEAD", [])
    assert head.status == 200
    assert head.headers == get.headers
    assert head.file is None
    assert await body_of(head) == b""
    # Range is defined for GET only
    ranged_head = get.for_request("HEAD", [("Range", "bytes=0-9")])
    assert ranged_head.status == 200
    assert ranged_head.headers == get.headers
    assert download(path, method="HEAD").file is None
    await get.aclose()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(0, 3000),
    specs=st.lists(
        st.one_of(
            st.tuples(st.integers(0, 3200), st.integers(0, 3200)).map(
                lambda pair: f"{min(pair)}-{max(pair)}"
            ),
            st.integers(0, 3200).map(lambda first: f"{first}-"),
            st.integers(0, 3200).map(lambda length: f"-{length}"),
        ),
        min_size=1,
        max_size=6,
    ),
)
async def test_property_served_bytes_are_the_requested_slices(
    tmp_path: Path, size: int, specs: list[str]
) -> None:
    content = os.urandom(size)
    target = tmp_path / "blob.bin"
    target.write_bytes(content)
    response = download(target).for_request("GET", [("Range", "bytes=" + ",".join(specs))])
    body = await body_of(response)
    served: set[int] = set()
    if response.status == 416:
        assert body == b""
    elif response.status == 206 and response.header("content-range") is not None:
        served |= check_part(response.header("content-range"), body, content)
    else:
        assert response.status == 206
        content_type = response.header("content-type") or ""
        parts = parse_byteranges(body, content_type.split("boundary=")[1])
        assert len(parts) > 1
        for headers, part in parts:
            served |= check_part(headers["content-range"], part, content)
    wanted: set[int] = set()
    for spec in specs:
        first, _, last = spec.partition("-")
        if not first:
            wanted.update(range(max(size - int(last), 0), size) if int(last) else ())
        else:
            wanted.update(range(int(first), size if not last else min(int(last) + 1, size)))
    assert served == wanted


def check_part(content_range: str | None, part: bytes, content: bytes) -> set[int]:
    assert content_range is not None
    unit_and_span, _, total = content_range.partition("/")
    first, _, last = unit_and_span.removeprefix("bytes ").partition("-")
    start, stop = int(first), int(last) + 1
    assert int(total) == len(content)
    assert part == content[start:stop]
    return set(range(start, stop))


# -- root confinement and bad paths ----------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "public"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "a.txt").write_bytes(b"inside")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    return base


async def test_paths_inside_root_are_served(root: Path) -> None:
    assert await body_of(download("sub/a.txt", root=root)) == b"inside"
    assert await body_of(download("sub/../sub/./a.txt", root=str(root))) == b"inside"
    (root / "link.txt").symlink_to(root / "sub" / "a.txt")
    linked = download("link.txt", root=root)
    assert linked.file is not None
    assert linked.file.path == root / "sub" / "a.txt"
    assert await body_of(linked) == b"inside"


@pytest.mark.parametrize(
    "attempt", ["../secret.txt", "sub/../../secret.txt", "..", "sub/../../public/../secret.txt"]
)
def test_dot_dot_escapes_are_refused(root: Path, attempt: str) -> None:
    with pytest.raises(PathOutsideRoot, match="outside the root") as caught:
        download(attempt, root=root)
    assert caught.value.status_code == 403
    assert isinstance(caught.value, ValueError)


def test_absolute_paths_are_refused(root: Path) -> None:
    for attempt in (str(root.parent / "secret.txt"), str(root / "sub" / "a.txt"), "/etc/passwd"):
        with pytest.raises(PathOutsideRoot, match="absolute"):
            download(attempt, root=root)


def test_symlinks_pointing_outside_are_refused(root: Path) -> None:
    (root / "escape.txt").symlink_to(root.parent / "secret.txt")
    (root / "escape_dir").symlink_to(root.parent)
    for attempt in ("escape.txt", "escape_dir/secret.txt"):
        with pytest.raises(PathOutsideRoot):
            download(attempt, root=root)


def test_missing_files_and_non_files_are_not_found(root: Path, tmp_path: Path) -> None:
    for attempt, base in [("nope.txt", root), ("sub", root), ("sub/a.txt/x", root)]:
        with pytest.raises(DownloadNotFound) as caught:
            download(attempt, root=base)
        assert caught.value.status_code == 404
        assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(DownloadNotFound):
        download(tmp_path / "missing.bin")
    with pytest.raises(DownloadNotFound, match="NUL"):
        download("a\x00b", root=root)
    (root / "loop").symlink_to(root / "loop")
    with pytest.raises(DownloadNotFound):
        download("loop", root=root)


def test_bad_arguments(path: Path) -> None:
    with pytest.raises(TypeError, match="filename must be a str"):
        download(path, filename=b"a.txt")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name must be a str"):
        download(path, name=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="content_type"):
        download(path, content_type="text/plain\r\nX-Evil: 1")
    with pytest.raises(ValueError, match="size"):
        download(path, size=10)
    with pytest.raises(ValueError, match="suspend"):
        download(path, buffer=BufferPolicy(4, "sliding"))
    with pytest.raises(TypeError, match="path or an async iterable"):
        download(b"bytes are not a source")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="root"):
        download(stream([b"x"]), root=path.parent)
    with pytest.raises(ValueError, match="size"):
        download(stream([b"x"]), size=-1)


# -- cleanup -----------------------------------------------------------------------


async def test_early_close_closes_the_file_and_leaves_no_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 * CHUNK))
    opened: list[Any] = []
    real_open: Callable[..., Any] = open

    def recording_open(*args: Any, **kwargs: Any) -> Any:
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(file_body, "open", recording_open, raising=False)
    before = open_fds()
    response = download(big, buffer=BufferPolicy(2))
    assert open_fds() == before  # nothing is opened before the body is iterated
    iterator = aiter(response.body)
    first = await anext(iterator)
    assert len(first) == CHUNK
    assert open_fds() == before + 1
    await response.aclose()
    assert len(opened) == 1
    assert opened[0].closed
    assert open_fds() == before


@dataclass
class BlockedRead:
    """Makes the next file read block in its worker thread until `release` is set.

    `started` is set once the thread is inside the read; `closing` once the reader's
    cleanup (``_ThreadedFile.aclose``) has begun; `closed` once the file is closed.
    Tests wait on these events, never on the clock.
    """

    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        threaded = file_body._ThreadedFile
        read, aclose, close_now = threaded._read, threaded.aclose, threaded._close_now

        def blocking_read(file: Any, *args: Any) -> list[bytes]:
            self.started.set()
            self.release.wait(30)
            return read(file, *args)

        async def signalling_aclose(file: Any) -> None:
            self.closing.set()
            await aclose(file)

        def signalling_close_now(file: Any) -> None:
            close_now(file)
            self.closed.set()

        monkeypatch.setattr(threaded, "_read", blocking_read)
        monkeypatch.setattr(threaded, "aclose", signalling_aclose)
        monkeypatch.setattr(threaded, "_close_now", signalling_close_now)


async def wait_for(event: asyncio.Event) -> None:
    async with asyncio.timeout(30):  # a hang guard only: events end every wait
        await event.wait()


async def test_closing_while_a_read_is_in_flight_waits_for_it(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = BlockedRead()
    blocked.install(monkeypatch)
    before = open_fds()
    body = file_body.read_spans(path, [ByteRange(0, 100)])
    reader = asyncio.ensure_future(anext(body))
    await asyncio.to_thread(blocked.started.wait, 30)
    reader.cancel()
    await wait_for(blocked.closing)
    for _ in range(10):  # give the reader every chance to (wrongly) finish
        await asyncio.sleep(0)
    # the cancelled reader is still in its cleanup: the file is not closed under the thread
    assert not reader.done()
    assert not blocked.closed.is_set()
    assert open_fds() == before + 1
    blocked.release.set()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert blocked.closed.is_set()
    assert open_fds() == before


async def test_cancelled_again_during_cleanup_the_file_closes_when_the_read_ends(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = BlockedRead()
    blocked.install(monkeypatch)
    before = open_fds()
    body = file_body.read_spans(path, [ByteRange(0, 100)])
    reader = asyncio.ensure_future(anext(body))
    await asyncio.to_thread(blocked.started.wait, 30)
    reader.cancel()
    await wait_for(blocked.closing)
    reader.cancel()  # gives up waiting for the read
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert not blocked.closed.is_set()
    assert open_fds() == before + 1  # still in use by the thread
    blocked.release.set()
    await wait_for(blocked.closed)  # closed by the read's done callback
    assert open_fds() == before


async def test_a_body_never_iterated_holds_nothing(path: Path) -> None:
    before = open_fds()
    responses = [download(path).for_request("GET", [("Range", "bytes=0-1,5-6")]) for _ in range(5)]
    assert open_fds() == before
    del responses


async def test_a_file_that_shrinks_while_sent_raises(tmp_path: Path) -> None:
    target = tmp_path / "shrinking.bin"
    target.write_bytes(os.urandom(4 * CHUNK))
    response = download(target)
    target.write_bytes(b"short")
    with pytest.raises(DownloadError, match="shrank"):
        await body_of(response)


# -- async iterable sources --------------------------------------------------------


async def stream(chunks: list[bytes], log: list[str] | None = None) -> AsyncIterator[bytes]:
    try:
        for chunk in chunks:
            if log is not None:
                log.append("yield")
            yield chunk
    finally:
        if log is not None:
            log.append("closed")


async def test_stream_source() -> None:
    response = download(stream([b"ab", b"cd"]), filename="data.csv", size=4)
    headers = headers_of(response)
    assert response.status == 200
    assert headers == {
        "content-type": "text/csv",
        "content-length": "4",
        "content-disposition": 'attachment; filename="data.csv"',
    }
    assert response.file is None
    assert await chunks_of(response) == [b"ab", b"cd"]


async def test_stream_source_ignores_range_and_has_no_length_without_size() -> None:
    response = download(stream([b"abc"])).for_request("GET", [("Range", "bytes=0-0")])
    assert response.status == 200
    assert headers_of(response) == {"content-type": "application/octet-stream"}
    assert await body_of(response) == b"abc"


async def test_stream_head_closes_the_source_unread() -> None:
    log: list[str] = []
    response = download(stream([b"abc"], log), size=3).for_request("HEAD", [])
    assert response.header("content-length") == "3"
    assert await body_of(response) == b""
    assert log == []  # never started, so nothing to run; and it cannot be read any more
    source = stream([b"x"], log)
    await body_of(download(source, method="HEAD"))
    with pytest.raises(StopAsyncIteration):
        await anext(aiter(source))


async def test_stream_size_mismatch_raises() -> None:
    with pytest.raises(DownloadError, match="more than the 3 bytes"):
        await body_of(download(stream([b"ab", b"cd"]), size=3))
    with pytest.raises(DownloadError, match="after 2 of the 3 bytes"):
        await body_of(download(stream([b"ab"]), size=3))


async def test_stream_of_non_bytes_raises() -> None:
    async def text() -> AsyncIterator[str]:
        yield "not bytes"

    with pytest.raises(TypeError, match="must yield bytes"):
        await body_of(download(text()))  # type: ignore[arg-type]


async def test_stream_is_bounded_and_closed_early() -> None:
    log: list[str] = []
    response = download(stream([b"x"] * 1000, log), buffer=BufferPolicy(8))
    iterator = aiter(response.body)
    await anext(iterator)
    for _ in range(20):
        await asyncio.sleep(0)
    assert log.count("yield") <= 8 + 2  # the buffer, the one taken, one in hand
    await response.aclose()
    assert log[-1] == "closed"


async def test_default_stream_buffer_holds_256() -> None:
    log: list[str] = []
    response = download(stream([b"x"] * 1000, log))
    iterator = aiter(response.body)
    await anext(iterator)
    for _ in range(20):
        await asyncio.sleep(0)
    assert 256 <= log.count("yield") <= 256 + 2
    await response.aclose()


# -- request.headers through real servers (defect 4) -------------------------------


def asgi_raw_app(path: Path) -> Any:
    """A bare ASGI app that hands ``scope["headers"]`` (bytes pairs) to download."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        response = download(path, request_headers=scope["headers"], method=scope["method"])
        await to_asgi(response)(scope, receive, send)

    return app


def starlette_app(path: Path) -> Any:
    """A Starlette route that hands ``request.headers`` to download."""

    async def route(request: Request) -> Any:
        return to_asgi(download(path, request_headers=request.headers, method=request.method))

    return Starlette(routes=[Route("/file", route, methods=["GET", "HEAD"])])


@contextlib.asynccontextmanager
async def aiohttp_server(path: Path) -> AsyncIterator[tuple[str, int]]:
    """aiohttp's own server; the handler hands ``request.headers`` (a CIMultiDictProxy)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = download(path, request_headers=request.headers, method=request.method)
        return await to_aiohttp(request, response)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield "127.0.0.1", int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("server", ["asgi raw", "starlette", "aiohttp"])
async def test_request_headers_from_a_real_server(path: Path, data: bytes, server: str) -> None:
    if server == "aiohttp":
        running = aiohttp_server(path)
    else:
        running = serve(asgi_raw_app(path) if server == "asgi raw" else starlette_app(path))
    async with running as (host, port), httpx.AsyncClient() as client:
        url = f"http://{host}:{port}/file"
        full = await client.get(url)
        assert full.status_code == 200
        assert full.content == data
        etag = full.headers["etag"]
        ranged = await client.get(url, headers={"Range": "bytes=0-9"})
        assert ranged.status_code == 206
        assert ranged.content == data[:10]
        assert ranged.headers["content-range"] == f"bytes 0-9/{len(data)}"
        # repeated lines reach download as repeated lines
        cached = await client.get(
            url, headers=[("If-None-Match", '"other"'), ("If-None-Match", etag)]
        )
        assert cached.status_code == 304
        twice = await client.get(url, headers=[("Range", "bytes=0-9"), ("Range", "20-29")])
        assert twice.status_code == 200
        assert twice.content == data
        head = await client.head(url, headers={"Range": "bytes=0-9"})
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(data))
        assert head.content == b""
