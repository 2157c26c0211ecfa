"""What every adapter promises for downloads, exports and uploads, checked under every
server it runs on (the `Target`s of tests/_adapter_contract.py)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamfx import SSEDecoder
from tests._adapter_contract import (
    Deployment,
    requires,
    unique_name,
)
from tests._client import close_all, open_raw, post_reading_early, recv_until, wait_until
from tests._stream_routes import CIRCUIT_RESET, lines
from tests.apps.uploads import refused_log

pytest_plugins = ["tests._adapter_fixtures"]  # the `target` and `deployment` fixtures


SIZE = 300_000


@pytest.fixture
def stored(deployment: Deployment) -> tuple[str, bytes]:
    """A file of `SIZE` random bytes the app can download: its name and content."""
    data = os.urandom(SIZE)
    name = unique_name("data", ".bin")
    (deployment.root / "files" / name).write_bytes(data)
    return name, data


# -- downloads ---------------------------------------------------------------------------


async def test_download_whole_and_in_ranges(
    deployment: Deployment, stored: tuple[str, bytes]
) -> None:
    d = deployment
    name, data = stored
    url = f"/files/{name}"
    whole = await d.client.get(url)
    assert whole.status_code == 200
    assert whole.headers["content-length"] == str(SIZE)
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.content == data

    part = await d.client.get(url, headers={"Range": "bytes=1000-70999"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-70999/{SIZE}"
    assert part.content == data[1000:71000]

    tail = await d.client.get(url, headers={"Range": "bytes=-500"})
    assert tail.status_code == 206
    assert tail.content == data[-500:]

    several = await d.client.get(url, headers={"Range": "bytes=0-9,100-199"})
    assert several.status_code == 206
    assert several.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert data[0:10] in several.content
    assert data[100:200] in several.content

    stale = await d.client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200
    assert stale.content == data
    await d.settled()


async def test_download_conditional_unsatisfiable_and_head(
    deployment: Deployment, stored: tuple[str, bytes]
) -> None:
    d = deployment
    name, _ = stored
    url = f"/files/{name}"
    head = await d.client.head(url, headers={"Range": "bytes=0-9"})
    assert head.status_code == 200
    assert head.headers["content-length"] == str(SIZE)
    assert head.content == b""

    unchanged = await d.client.get(url, headers={"If-None-Match": head.headers["etag"]})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert "content-type" not in unchanged.headers

    beyond = await d.client.get(url, headers={"Range": f"bytes={SIZE}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{SIZE}"
    await d.settled()


async def test_download_refusals_are_answered_with_their_status(deployment: Deployment) -> None:
    d = deployment
    files = (d.root / "files").resolve()
    outside = d.root / unique_name("outside", ".bin")
    outside.write_bytes(b"secret")
    (d.root / "escape.bin").write_bytes(b"secret")
    escape = unique_name("escape", ".bin")
    (files / escape).symlink_to(outside)

    missing = await d.client.get("/files/nothing.bin")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "text/plain; charset=utf-8"
    assert missing.text == d.target.error_text(404, f"no such file: {files / 'nothing.bin'}")

    refused = await d.client.get(f"/files/{escape}")
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "text/plain; charset=utf-8"
    why = f"{escape!r} resolves to {outside.resolve()}, outside the root {files}"
    assert refused.text == d.target.error_text(403, why)

    encoded = await d.client.get("/files/..%2Fescape.bin")  # the router may refuse it first
    assert encoded.status_code in (403, 404)
    assert b"secret" not in encoded.content
    await d.settled()


async def test_an_error_body_shows_no_server_path(deployment: Deployment) -> None:
    d = deployment
    missing = await d.client.get("/files/nothing.bin")
    assert missing.status_code == 404
    assert str(d.root.resolve()) not in missing.text


async def test_whole_files_skip_the_body_where_the_server_sends_files(
    deployment: Deployment, stored: tuple[str, bytes]
) -> None:
    """aiohttp (sendfile), WSGI servers (``wsgi.file_wrapper``) and granian (ASGI
    ``pathsend``) send a file themselves: the body is never iterated. Elsewhere, and for
    several ranges everywhere, it is."""
    d = deployment
    name, data = stored
    url = f"/files/{name}"
    whole = await d.client.get(url)
    part = await d.client.get(url, headers={"Range": "bytes=1000-70999"})
    several = await d.client.get(url, headers={"Range": "bytes=0-9,100-199"})
    assert whole.content == data
    assert part.content == data[1000:71000]
    assert several.status_code == 206
    await d.settled()
    zero_copy = d.target.zero_copy
    expected = (zero_copy is None) + (zero_copy != "ranges") + 1
    assert d.tally.count("download", "opened") == expected
    assert d.tally.count("download", "completed") == expected  # and each closed


async def test_a_client_leaving_mid_download_leaves_nothing_running(
    deployment: Deployment,
) -> None:
    d = deployment
    size = 16_000_000  # more than every buffer between the file and the client
    name = unique_name("big", ".bin")
    (d.root / "files" / name).write_bytes(b"y" * size)
    with await open_raw(d.port, f"/files/{name}", rcvbuf=4096) as sock:
        await recv_until(sock, b"yyyy")
    if d.target.zero_copy is None:
        await wait_until(lambda: d.tally.count("download", "closed") == 1, "the body's close")
        assert d.tally.count("download", "bytes") < size
    await d.settled()


# -- exports -------------------------------------------------------------------------------


async def test_each_export_format(deployment: Deployment) -> None:
    d = deployment
    expected = [{"id": index, "name": f"row {index}", "formula": "=1+1"} for index in range(500)]
    as_json = await d.client.get("/export/json", params={"n": 500})
    as_ndjson = await d.client.get("/export/ndjson", params={"n": 500})
    as_csv = await d.client.get("/export/csv", params={"n": 500})
    empty = await d.client.get("/export/json", params={"n": 0})
    for reply in (as_json, as_ndjson, as_csv):
        assert reply.status_code == 200
        assert reply.headers["transfer-encoding"] == "chunked"
        assert reply.headers["content-disposition"] == 'attachment; filename="rows.out"'
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json() == expected
    assert as_ndjson.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in as_ndjson.text.splitlines()] == expected
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert rows == [  # the formula guard
        {"id": str(row["id"]), "name": row["name"], "formula": "'=1+1"} for row in expected
    ]
    assert empty.json() == []
    await d.settled()
    assert d.tally.finalized == d.tally.started == 4


async def test_an_export_failing_midway_never_looks_complete(deployment: Deployment) -> None:
    d = deployment
    for fmt in ("json", "ndjson", "csv"):
        received = bytearray()
        params = {"n": 50_000, "fail_at": 20_000}
        async with d.client.stream("GET", f"/export/{fmt}", params=params) as reply:
            assert reply.status_code == 200
            with pytest.raises(d.target.cut_body_errors):
                async for chunk in reply.aiter_raw():
                    received += chunk
        if fmt == "json" and (received or not d.target.resets_cut_bodies):
            assert received.startswith(b"[")
            assert not received.rstrip().endswith(b"]")
    failed = await d.client.get("/export/ndjson", params={"n": 5, "fail_at": 0})
    assert failed.status_code == 500
    assert failed.text == d.target.error_text(500)
    await wait_until(lambda: d.tally.finalized == d.tally.started == 4, "every finalizer")
    await d.settled()


@pytest.mark.parametrize("kind", ["export", "download"])
async def test_an_open_circuit_before_the_first_byte_is_a_503_with_retry_after(
    deployment: Deployment, kind: str
) -> None:
    d = deployment
    started = d.tally.started
    reply = await d.client.get(f"/circuit/{kind}")
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == str(math.ceil(CIRCUIT_RESET))
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.text == d.target.error_text(503, "circuit 'rows-db' is open")
    after = await d.client.get("/lines", params={"n": 3})
    assert after.content == lines(range(3))  # the connection serves on
    await d.settled()
    assert d.tally.started == started + 1  # /lines only: the guarded source never started


async def test_an_error_raised_before_any_response_exists_keeps_its_headers(
    deployment: Deployment,
) -> None:
    """Each app answers a route's `StreamfxError` the way its framework does it (an
    exception handler, a middleware, a view's ``except``) with ``error_response``:
    status, ``Retry-After`` and the phrase."""
    d = deployment
    reply = await d.client.get("/busy")
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == str(math.ceil(CIRCUIT_RESET))
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.text == d.target.error_text(503, "circuit 'rows-db' is open")


# -- uploads -------------------------------------------------------------------------------


def multipart(parts: list[tuple[str, str | None, str, bytes]], boundary: str = "b0") -> bytes:
    """A ``multipart/form-data`` body: parts are (name, filename, content type, content)."""
    out = bytearray()
    for name, filename, content_type, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        out += f"Content-Type: {content_type}\r\n\r\n".encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


BIG = os.urandom(3_000_000)
UPLOAD = multipart(
    [
        ("title", None, "text/plain", b"hello"),
        ("photo", "cat.png", "image/png", BIG),
        ("notes", "notes.txt", "text/plain", b"some notes\n" * 100),
    ]
)
MULTIPART = {"Content-Type": "multipart/form-data; boundary=b0"}


def in_pieces(body: bytes, size: int = 50_000) -> AsyncIterator[bytes]:
    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), size):
            yield body[start : start + size]

    return pieces()


def stored_uploads(root: Path) -> set[str]:
    return {path.name for path in (root / "uploads").iterdir()}


@requires("uploads")
@pytest.mark.parametrize("chunked", [False, True])
async def test_an_upload_within_the_limits_is_stored(deployment: Deployment, chunked: bool) -> None:
    d = deployment
    before = stored_uploads(d.root)
    content = in_pieces(UPLOAD) if chunked else UPLOAD
    reply = await d.client.post("/upload", content=content, headers=MULTIPART)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["fields"] == {"title": "hello"}
    assert result["files"]["photo"] == ["cat.png", len(BIG), hashlib.sha256(BIG).hexdigest()]
    assert result["files"]["notes"][:2] == ["notes.txt", 1100]
    assert len(stored_uploads(d.root) - before) == 2
    await d.settled()


REFUSALS = {  # query, body, chunked, status, error, a part of its message
    "declared length over max_size": (
        "max_size=1000000",
        UPLOAD,
        False,
        413,
        "UploadTooLarge",
        "the upload is larger than 1000000 bytes",
    ),
    "streamed body over max_size": (
        "max_size=1000000",
        UPLOAD,
        True,
        413,
        "UploadTooLarge",
        "1000000",
    ),
    "part over max_part_size": (
        "max_part_size=100000",
        UPLOAD,
        False,
        413,
        "UploadTooLarge",
        "100000",
    ),
    "more parts than max_parts": ("max_parts=2", UPLOAD, False, 413, "UploadTooLarge", "2"),
    "file type not allowed": (
        "allowed=image/jpeg,text/*",
        UPLOAD,
        False,
        415,
        "UnsupportedMediaType",
        "image/png",
    ),
    "truncated body": ("", UPLOAD[: len(UPLOAD) // 2], False, 400, "MalformedUpload", ""),
}


@requires("uploads")
@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_refused_upload_gets_its_status_and_leaves_nothing(
    deployment: Deployment, case: str
) -> None:
    d = deployment
    query, body, chunked, status, kind, part_of_message = REFUSALS[case]
    before = stored_uploads(d.root)
    answer = await post_reading_early(d.port, f"/upload?{query}", body, MULTIPART, chunked=chunked)
    code, headers, content = answer
    assert code == status, content
    assert headers["content-type"] == "text/plain; charset=utf-8"
    refusal = refused_log(d.root)[-1]
    assert refusal.startswith(f"{kind}: ")
    message = refusal.removeprefix(f"{kind}: ")
    assert part_of_message in message
    assert content.decode() == d.target.upload_error_text(message)
    assert len(content) < 300
    assert stored_uploads(d.root) == before  # nothing of the refused upload is kept
    await d.settled()
    again = await d.client.post("/upload", content=UPLOAD, headers=MULTIPART)
    assert again.status_code == 200  # and the next upload is served as ever


@requires("uploads")
async def test_a_request_that_is_no_upload_is_refused(deployment: Deployment) -> None:
    d = deployment
    before = stored_uploads(d.root)
    not_multipart = await d.client.post("/upload", json={"a": 1})
    assert not_multipart.status_code == 415
    assert not_multipart.headers["content-type"] == "text/plain; charset=utf-8"
    no_boundary = await d.client.post(
        "/upload", content=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 400
    assert [line.split(":")[0] for line in refused_log(d.root)[-2:]] == [
        "UnsupportedMediaType",
        "MalformedUpload",
    ]
    assert stored_uploads(d.root) == before
    await d.settled()


@requires("uploads", "concurrency", "streams_uploads")
async def test_a_stalled_uploader_holds_only_its_own_request(deployment: Deployment) -> None:
    """While one client stalls mid-upload, others upload and stream; when it leaves,
    its upload is refused and what was stored of it removed."""
    d = deployment
    before = stored_uploads(d.root)
    refusals = len(refused_log(d.root))
    head = (
        "POST /upload HTTP/1.1\r\nHost: test\r\n"
        "Content-Type: multipart/form-data; boundary=b0\r\n"
        f"Content-Length: {len(UPLOAD)}\r\n\r\n"
    )
    stalled = await open_raw(d.port, "", send=head.encode() + UPLOAD[:500_000])
    try:
        if d.target.server != "waitress":  # waitress reads the whole body before the app runs
            await wait_until(lambda: d.tally.upload_parts == 1, "the stalled upload to start")
        beside = await d.client.post("/upload", content=UPLOAD, headers=MULTIPART)
        assert beside.status_code == 200
        events = await d.client.get("/sse", params={"n": 2})
        assert [event.data for event in SSEDecoder().feed(events.content)] == ["event 0", "event 1"]
    finally:
        close_all([stalled])
    # waitress reads the whole body before the app runs; Quart cancels the view instead
    if d.target.server != "waitress" and not d.target.lacks("upload_error_on_leave"):
        await wait_until(lambda: len(refused_log(d.root)) == refusals + 1, "the refusal")
        refusal = refused_log(d.root)[-1]
        assert refusal.startswith("MalformedUpload: ")
        if d.target.adapter in ("asgi", "litestar"):
            assert "disconnected" in refusal
    await wait_until(
        lambda: len(stored_uploads(d.root) - before) == 2, "the refused part to be removed"
    )
    await d.settled()
