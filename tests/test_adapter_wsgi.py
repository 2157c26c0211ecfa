"""`streamfx.adapters.wsgi` under real WSGI servers, through a Flask app.

Each test runs against waitress (in this process, on a thread) and gunicorn (a
subprocess, with the sync worker and with the gthread worker, the latter with
``--preload`` and the background loop started in the master, so that the forked
worker must start its own). Clients are httpx and raw sockets. What happened on the
server side is read from the files the app writes (see tests/wsgi_flask_app.py).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from waitress.server import TcpWSGIServer, create_server

from streamfx import DownloadNotFound, SSEDecoder, StreamResponse
from streamfx.adapters.wsgi import _body as _wsgi_body
from streamfx.adapters.wsgi import background_loop, to_wsgi
from streamfx.metrics import set_metrics
from tests.wsgi_flask_app import FileReportingMetrics, create_app

TESTS = Path(__file__).parent
WAITRESS_HIGH_WATERMARK = 256 * 1024


@dataclass
class Server:
    kind: str
    port: int
    directory: Path
    server_buffer: int  # bytes the server may hold for a client beyond the socket's

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[str]:
        log = self.directory / "events.log"
        return log.read_text().splitlines() if log.exists() else []

    def wait_for(self, what: str, predicate: Callable[[], bool], limit: float = 10.0) -> None:
        """Poll `predicate` until true; fail after `limit` seconds (a hang, not a speed)."""
        deadline = time.monotonic() + limit
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"{self.kind}: gave up waiting for {what}")
            time.sleep(0.02)

    def background_tasks(self) -> int:
        tasks: int = self.status()["tasks"]
        return tasks

    def download_bodies_started(self) -> int:
        started: int = self.status()["download_bodies_started"]
        return started

    def status(self) -> dict[str, int]:
        reply = httpx.get(f"{self.url}/tasks", timeout=10)
        reply.raise_for_status()
        status: dict[str, int] = reply.json()
        return status


def _serve_waitress(directory: Path) -> Iterator[Server]:
    previous = set_metrics(FileReportingMetrics(directory))
    server = create_server(
        create_app(str(directory)),
        host="127.0.0.1",
        port=0,
        threads=220,
        connection_limit=400,
        outbuf_high_watermark=WAITRESS_HIGH_WATERMARK,
        expose_tracebacks=False,
    )
    assert isinstance(server, TcpWSGIServer)
    port = int(server.getsockname()[1])
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield Server("waitress", port, directory, WAITRESS_HIGH_WATERMARK)
    finally:
        server.close()
        thread.join(timeout=5)
        set_metrics(previous)


def _serve_gunicorn(directory: Path, worker: str) -> Iterator[Server]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    command = [sys.executable, "-m", "gunicorn", "--bind", f"fd://{listener.fileno()}"]
    command += ["--workers", "1", "--worker-class", worker, "--graceful-timeout", "2"]
    command += ["--log-level", "warning", "--pythonpath", str(TESTS.parent)]
    env = dict(os.environ, STREAMFX_TEST_DIR=str(directory), STREAMFX_TEST_METRICS="1")
    if worker == "gthread":
        command += ["--threads", "220", "--preload"]
        env["STREAMFX_TEST_WARM"] = "1"
    command.append("tests.wsgi_flask_app:create_app()")
    with (directory / "gunicorn.log").open("wb") as log:
        process = subprocess.Popen(
            command, pass_fds=(listener.fileno(),), env=env, stdout=log, stderr=log
        )
    listener.close()
    try:
        server = Server(f"gunicorn-{worker}", port, directory, 0)
        deadline = time.monotonic() + 20
        while True:
            try:
                server.background_tasks()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            process.kill()
            process.wait()


@pytest.fixture(scope="module", params=["waitress", "gunicorn-sync", "gunicorn-gthread"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp(request.param)
    if request.param == "waitress":
        yield from _serve_waitress(directory)
    else:
        yield from _serve_gunicorn(directory, request.param.removeprefix("gunicorn-"))


# -- raw HTTP/1.1 over a socket --------------------------------------------------------


def open_get(server: Server, path: str, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    return sock


def read_until(sock: socket.socket, marker: bytes, received: bytes = b"") -> bytes:
    while marker not in received:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {marker!r}; got {received[-200:]!r}")
        received += chunk
    return received


def read_to_eof(sock: socket.socket) -> bytes:
    parts = []
    while chunk := sock.recv(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def dechunk(raw: bytes) -> tuple[bytes, bool]:
    """The body of a chunked response, and whether it ended with the last chunk."""
    _, _, rest = raw.partition(b"\r\n\r\n")
    body = bytearray()
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            return bytes(body), False
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(body), rest.startswith(b"\r\n")
        if len(rest) < size + 2:
            body += rest[:size]
            return bytes(body), False
        body += rest[:size]
        rest = rest[size + 2 :]
    return bytes(body), False


def closed_streams(server: Server) -> set[str]:
    return {line.split()[1] for line in server.log_lines() if line.startswith("close ")}


def opened_streams(server: Server) -> set[str]:
    return {line.split()[1] for line in server.log_lines() if line.startswith("open ")}


def produced(server: Server, token: str) -> int:
    path = server.directory / f"{token}.produced"
    return path.stat().st_size if path.exists() else 0


def tcp_in_flight_limit(rcvbuf: int) -> int:
    """Bytes the kernel may hold between a server and a client that does not read: the
    sender's largest send buffer plus the receiver's buffer (Linux doubles it)."""
    wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return wmem_max + 2 * rcvbuf


_tokens = iter(range(1_000_000))


def new_token(prefix: str) -> str:
    return f"{prefix}{next(_tokens)}"


# -- SSE -------------------------------------------------------------------------------


def test_sse_events_then_heartbeats_then_disconnect_runs_finalizer(server: Server) -> None:
    token = new_token("sse")
    path = f"/sse?token={token}&events=3&hold=1&heartbeat=0.05"
    decoder = SSEDecoder()
    received: list[str] = []
    pings = 0
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{server.url}{path}") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert "content-length" not in response.headers
        for chunk in response.iter_raw():
            pings += chunk.count(b": ping\n\n")
            received += [event.data or "" for event in decoder.feed(chunk)]
            if len(received) == 3 and pings >= 2:
                break
    assert [item[:8] for item in received] == ["00000000", "00000001", "00000002"]
    server.wait_for("the source's finally", lambda: token in closed_streams(server))
    server.wait_for("the stream's close", (server.directory / f"{token}.closed").exists)
    assert "outcome=closed" in (server.directory / f"{token}.closed").read_text()


def test_sse_that_ends_ends_the_body_cleanly(server: Server) -> None:
    token = new_token("end")
    reply = httpx.get(f"{server.url}/sse?token={token}&events=5", timeout=10)
    events = SSEDecoder().feed(reply.content)
    assert [(event.data or "")[:8] for event in events] == [f"{i:08d}" for i in range(5)]
    server.wait_for("the source's finally", lambda: token in closed_streams(server))


def test_head_sends_headers_and_never_starts_the_body(server: Server) -> None:
    token = new_token("head")
    reply = httpx.head(f"{server.url}/sse?token={token}&events=5", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert reply.content == b""
    assert server.background_tasks() == 0
    assert token not in opened_streams(server)


def test_many_clients_disconnecting_mid_stream_run_every_finalizer(server: Server) -> None:
    # gunicorn's sync worker serves one request at a time: its clients queue up.
    one_at_a_time = server.kind == "gunicorn-sync"
    clients = 8 if one_at_a_time else 200
    tokens = [new_token("many") for _ in range(clients)]
    all_streaming = threading.Barrier(1 if one_at_a_time else clients, timeout=30)

    def one_client(token: str) -> None:
        sock = open_get(server, f"/sse?token={token}&events=2&hold=1&heartbeat=0.05")
        with sock:
            read_until(sock, b"data: 00000001")
            all_streaming.wait()  # every stream is open at once, then they all leave

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one_client, tokens))
    server.wait_for("every finalizer", lambda: set(tokens) <= closed_streams(server))
    server.wait_for(
        "the streams' close",
        lambda: all((server.directory / f"{token}.closed").exists() for token in tokens),
    )
    assert server.background_tasks() == 0


# -- failures ----------------------------------------------------------------------


def test_error_before_the_first_chunk_is_a_500(server: Server) -> None:
    reply = httpx.get(f"{server.url}/fail?mode=before", timeout=10)
    assert reply.status_code == 500
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.text == "Internal Server Error"


def test_error_with_a_status_before_the_first_chunk_uses_it(server: Server) -> None:
    reply = httpx.get(f"{server.url}/fail?mode=status", timeout=10)
    assert reply.status_code == 403
    assert reply.text == "Forbidden"  # the message stays in the server log


def test_error_after_start_aborts_a_chunked_body(server: Server) -> None:
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{server.url}/fail?mode=after") as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()
    with open_get(server, "/fail?mode=after") as sock:
        raw = read_to_eof(sock)
    body, complete = dechunk(raw)
    assert b"transfer-encoding: chunked" in raw.lower()
    assert body == b"chunk 0\nchunk 1\nchunk 2\n"
    assert not complete


def test_error_after_start_leaves_a_sized_body_short(server: Server) -> None:
    with open_get(server, "/fail?mode=after&length=1000") as sock:
        raw = read_to_eof(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-length: 1000" in head.lower()
    assert body == b"chunk 0\nchunk 1\nchunk 2\n"


# -- zero copy -------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "length"), [(0, None), (1000, 70_000), (199_999, 1)])
def test_file_range_goes_out_through_the_file_wrapper(
    server: Server, offset: int, length: int | None
) -> None:
    data = os.urandom(200_000)
    (server.directory / "data.bin").write_bytes(data)
    query = f"offset={offset}" + ("" if length is None else f"&length={length}")
    reply = httpx.get(f"{server.url}/file?{query}", timeout=10)
    end = len(data) if length is None else offset + length
    assert reply.status_code == 200
    assert reply.content == data[offset:end]
    assert not (server.directory / "file-body-iterated").exists()


# -- slow readers ----------------------------------------------------------------------


def wait_until_still(server: Server, token: str) -> int:
    """The producer's count once it stopped moving for 0.3 s (bounded wait)."""
    deadline = time.monotonic() + 15
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = produced(server, token)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > 0.3:
            return now
        time.sleep(0.02)
    pytest.fail(f"{server.kind}: the producer never stopped: {last} items")


def test_slow_reader_holds_back_a_suspend_producer(server: Server) -> None:
    token = new_token("suspend")
    size, count, capacity, rcvbuf = 64 * 1024, 400, 8, 64 * 1024
    path = f"/sse?token={token}&events={count}&size={size}&capacity={capacity}"
    with open_get(server, path, rcvbuf=rcvbuf) as sock:
        head = read_until(sock, b"\r\n\r\n")
        held = wait_until_still(server, token)
        # The kernel's buffers, the server's own, the buffer and the batch in hand.
        limit = (tcp_in_flight_limit(rcvbuf) + server.server_buffer) // size + 2 * capacity + 4
        assert held <= limit < count // 2
        raw = head + read_to_eof(sock)
    body, complete = dechunk(raw)
    assert complete
    events = SSEDecoder().feed(body)
    assert [(event.data or "")[:8] for event in events] == [f"{i:08d}" for i in range(count)]
    server.wait_for("the source's finally", lambda: token in closed_streams(server))


def test_slow_reader_makes_a_sliding_stream_drop_and_count(server: Server) -> None:
    token = new_token("sliding")
    size, count, capacity, rcvbuf = 16 * 1024, 2000, 8, 64 * 1024
    path = f"/sse?token={token}&events={count}&size={size}&capacity={capacity}&strategy=sliding"
    with open_get(server, path, rcvbuf=rcvbuf) as sock:
        server.wait_for("the producer to finish", (server.directory / f"{token}.done").exists)
        raw = read_to_eof(sock)
    body, complete = dechunk(raw)
    assert complete
    indexes = [int((event.data or "")[:8]) for event in SSEDecoder().feed(body)]
    assert indexes == sorted(indexes)
    assert indexes[-1] == count - 1  # the newest survive
    server.wait_for("the stream's close", (server.directory / f"{token}.closed").exists)
    report = (server.directory / f"{token}.closed").read_text()
    match = re.fullmatch(r"dropped=(\d+) outcome=completed", report)
    assert match is not None, report
    dropped = int(match.group(1))
    assert dropped > 0
    assert dropped + len(indexes) == count


# -- downloads -------------------------------------------------------------------------


@pytest.fixture
def stored_file(server: Server) -> tuple[str, bytes]:
    data = os.urandom(300_000)
    name = f"{new_token('file')}.bin"
    (server.directory / "files" / name).write_bytes(data)
    return name, data


def test_download_whole_file(server: Server, stored_file: tuple[str, bytes]) -> None:
    name, data = stored_file
    started = server.download_bodies_started()
    reply = httpx.get(f"{server.url}/download/{name}", timeout=10)
    assert server.download_bodies_started() == started  # sent from the file wrapper
    assert reply.status_code == 200
    assert reply.headers["content-length"] == str(len(data))
    assert reply.headers["accept-ranges"] == "bytes"
    assert reply.content == data


def test_download_single_range(server: Server, stored_file: tuple[str, bytes]) -> None:
    name, data = stored_file
    reply = httpx.get(
        f"{server.url}/download/{name}", headers={"Range": "bytes=1000-70999"}, timeout=10
    )
    assert reply.status_code == 206
    assert reply.headers["content-range"] == f"bytes 1000-70999/{len(data)}"
    assert reply.content == data[1000:71000]


def test_download_suffix_and_multiple_ranges(
    server: Server, stored_file: tuple[str, bytes]
) -> None:
    name, data = stored_file
    url = f"{server.url}/download/{name}"
    reply = httpx.get(url, headers={"Range": "bytes=-500"}, timeout=10)
    assert reply.status_code == 206
    assert reply.content == data[-500:]
    started = server.download_bodies_started()
    reply = httpx.get(url, headers={"Range": "bytes=0-9,100-199"}, timeout=10)
    assert server.download_bodies_started() == started + 1  # several ranges: the body
    assert reply.status_code == 206
    assert reply.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert data[0:10] in reply.content
    assert data[100:200] in reply.content


def test_download_conditional_304_and_unsatisfiable_416(
    server: Server, stored_file: tuple[str, bytes]
) -> None:
    name, data = stored_file
    url = f"{server.url}/download/{name}"
    etag = httpx.head(url, timeout=10).headers["etag"]
    reply = httpx.get(url, headers={"If-None-Match": etag}, timeout=10)
    assert reply.status_code == 304
    assert reply.content == b""
    reply = httpx.get(url, headers={"Range": f"bytes={len(data)}-"}, timeout=10)
    assert reply.status_code == 416
    assert reply.headers["content-range"] == f"bytes */{len(data)}"
    reply = httpx.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'}, timeout=10)
    assert reply.status_code == 200
    assert reply.content == data


def test_download_head_has_headers_only(server: Server, stored_file: tuple[str, bytes]) -> None:
    name, data = stored_file
    reply = httpx.head(f"{server.url}/download/{name}", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["content-length"] == str(len(data))
    assert reply.content == b""


def test_download_of_a_missing_file_is_a_plain_404(server: Server) -> None:
    reply = httpx.get(f"{server.url}/download/nothing-here.bin", timeout=10)
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert server.background_tasks() == 0


# -- exports ---------------------------------------------------------------------------


def test_export_json(server: Server) -> None:
    reply = httpx.get(f"{server.url}/export/json?rows=500", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert 'filename="rows.json"' in reply.headers["content-disposition"]
    rows = reply.json()
    assert [row["id"] for row in rows] == list(range(500))


def test_export_ndjson(server: Server) -> None:
    reply = httpx.get(f"{server.url}/export/ndjson?rows=500", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/x-ndjson")
    lines = reply.text.splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(500))


def test_export_csv(server: Server) -> None:
    reply = httpx.get(f"{server.url}/export/csv?rows=500", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [int(row["id"]) for row in rows] == list(range(500))
    assert rows[0]["formula"] != "=1+1"  # neutralized against formula injection


@pytest.mark.parametrize("kind", ["json", "ndjson", "csv"])
def test_export_failing_midway_never_looks_complete(server: Server, kind: str) -> None:
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{server.url}/export/{kind}?rows=5000&fail_at=4000") as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()


def test_export_failing_before_the_first_row_is_a_500(server: Server) -> None:
    reply = httpx.get(f"{server.url}/export/ndjson?rows=5&fail_at=0", timeout=10)
    assert reply.status_code == 500
    assert reply.text == "Internal Server Error"


# -- uploads ---------------------------------------------------------------------------


def uploaded_files(server: Server) -> set[str]:
    return {path.name for path in (server.directory / "uploads").iterdir()}


def multipart_body(parts: list[tuple[str, str | None, str, bytes]], boundary: str) -> bytes:
    out = bytearray()
    for name, filename, content_type, content in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        out += f"Content-Type: {content_type}\r\n\r\n".encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def post_upload(
    server: Server, body: bytes, query: str = "", *, chunked: bool = False, boundary: str = "b0"
) -> httpx.Response:
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 50_000):
            yield body[start : start + 50_000]

    content: bytes | Iterator[bytes] = pieces() if chunked else body
    return httpx.post(f"{server.url}/upload?{query}", content=content, headers=headers, timeout=20)


BIG = os.urandom(3_000_000)
UPLOAD = [
    ("title", None, "text/plain", b"hello"),
    ("photo", "cat.png", "image/png", BIG),
    ("notes", "notes.txt", "text/plain", b"some notes\n" * 100),
]


@pytest.mark.parametrize("chunked", [False, True])
def test_upload_is_streamed_to_disk(server: Server, chunked: bool) -> None:
    before = uploaded_files(server)
    reply = post_upload(server, multipart_body(UPLOAD, "b0"), chunked=chunked)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["fields"] == {"title": "hello"}
    assert result["files"]["photo"] == ["cat.png", len(BIG), hashlib.sha256(BIG).hexdigest()]
    assert result["files"]["notes"][1] == 1100
    assert len(uploaded_files(server) - before) == 2


@pytest.mark.parametrize(
    ("query", "chunked", "status", "message"),
    [
        ("max_size=1000000", False, 413, "the upload is larger than 1000000 bytes"),
        ("max_size=1000000", True, 413, "1000000"),
        ("max_part_size=100000", False, 413, "100000"),
        ("max_parts=2", False, 413, "2"),
        ("allowed=image/jpeg,text/*", False, 415, "image/png"),
    ],
)
def test_refused_upload_keeps_nothing(
    server: Server, query: str, chunked: bool, status: int, message: str
) -> None:
    before = uploaded_files(server)
    reply = post_upload(server, multipart_body(UPLOAD, "b0"), query, chunked=chunked)
    assert reply.status_code == status
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert message in reply.text
    assert len(reply.text) < 300
    assert uploaded_files(server) == before
    assert server.background_tasks() == 0


def test_upload_that_is_not_multipart_is_415(server: Server) -> None:
    reply = httpx.post(f"{server.url}/upload", json={"a": 1}, timeout=10)
    assert reply.status_code == 415
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"


def test_upload_with_broken_framing_is_400(server: Server) -> None:
    before = uploaded_files(server)
    body = multipart_body(UPLOAD, "b0")
    truncated = body[: len(body) // 2]
    reply = post_upload(server, truncated)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    reply = httpx.post(
        f"{server.url}/upload",
        content=b"x",
        headers={"Content-Type": "multipart/form-data"},
        timeout=10,
    )
    assert reply.status_code == 400
    assert uploaded_files(server) == before


@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=1000-70999"}])
def test_download_straight_to_the_server_file_wrapper(
    server: Server, stored_file: tuple[str, bytes], headers: dict[str, str]
) -> None:
    name, data = stored_file
    started = server.download_bodies_started()
    reply = httpx.get(f"{server.url}/raw/download/{name}", headers=headers, timeout=10)
    assert server.download_bodies_started() == started  # the file went, not the body
    if headers:
        assert reply.status_code == 206
        assert reply.content == data[1000:71000]
    else:
        assert reply.status_code == 200
        assert reply.content == data


# -- the application itself, called as a WSGI server would -----------------------------


@dataclass
class Started:
    status: str = ""
    headers: list[tuple[str, str]] | None = None


def call(
    app: WSGIApplication, method: str = "GET", **extra: str
) -> tuple[Started, Iterable[bytes]]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ["REQUEST_METHOD"] = method
    environ.update(extra)
    started = Started()

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None, /
    ) -> Callable[[bytes], object]:
        started.status, started.headers = status, headers
        return lambda _: None

    return started, app(environ, start_response)


def loop_tasks() -> int:
    async def count() -> int:
        current = asyncio.current_task()
        return sum(1 for task in asyncio.all_tasks() if task is not current)

    return asyncio.run_coroutine_threadsafe(count(), background_loop()).result(timeout=5)


def test_the_application_sends_its_response_once() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"once"

    app = to_wsgi(StreamResponse(200, [], body()))
    started, iterable = call(app)
    assert started.status == "200 OK"
    assert list(iterable) == [b"once"]
    with pytest.raises(RuntimeError, match="already called"):
        call(app)


def test_request_headers_reach_for_request_and_hop_by_hop_headers_are_dropped() -> None:
    seen: list[tuple[str, Sequence[tuple[str, str]]]] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"x"

    def respond(method: str, headers: Sequence[tuple[str, str]]) -> StreamResponse:
        seen.append((method, headers))
        wire = [("content-type", "text/plain"), ("Connection", "keep-alive")]
        return StreamResponse(299, [*wire, ("Transfer-Encoding", "chunked")], body())

    response = StreamResponse(200, [], body(), respond_to=respond)
    started, iterable = call(
        to_wsgi(response), "POST", HTTP_RANGE="bytes=0-1", CONTENT_TYPE="text/csv"
    )
    assert list(iterable) == [b"x"]
    assert started.status == "299 "
    assert started.headers == [("content-type", "text/plain")]
    method, headers = seen[0]
    assert method == "POST"
    assert ("range", "bytes=0-1") in headers
    assert ("content-type", "text/csv") in headers


def test_an_error_from_for_request_becomes_its_status() -> None:
    def respond(method: str, headers: Sequence[tuple[str, str]]) -> StreamResponse:
        raise DownloadNotFound("no such file: a.txt")

    async def body() -> AsyncIterator[bytes]:
        yield b"never sent"

    response = StreamResponse(200, [], body(), respond_to=respond)
    started, iterable = call(to_wsgi(response))
    assert started.status == "404 Not Found"
    assert list(iterable) == [b"Not Found"]


def test_ready_chunks_leave_together_and_a_lone_chunk_at_once() -> None:
    async def body() -> AsyncIterator[bytes]:
        for index in range(100):  # all ready at once
            yield b"%d," % index
        await asyncio.sleep(0.01)
        yield b"late"

    _, iterable = call(to_wsgi(StreamResponse(200, [], body())))
    chunks = list(iterable)
    assert b"".join(chunks) == b"".join(b"%d," % i for i in range(100)) + b"late"
    assert chunks[-1] == b"late"
    assert len(chunks) == 2


def test_the_body_runs_at_most_one_chunk_ahead_in_one_task() -> None:
    produced: list[int] = []
    tasks: set[asyncio.Task[Any] | None] = set()

    async def body() -> AsyncIterator[bytes]:
        for index in range(100):
            await asyncio.sleep(0)  # never ready at once
            produced.append(index)
            tasks.add(asyncio.current_task())
            yield b"%d," % index

    _, iterable = call(to_wsgi(StreamResponse(200, [], body())))
    iterator = iter(iterable)
    assert next(iterator) == b"0,"
    assert next(iterator) == b"1,"
    time.sleep(0.1)
    assert produced == [0, 1, 2]  # the step found not ready is finished, and no more
    assert b"".join(iterator) == b"".join(b"%d," % i for i in range(2, 100))
    assert len(tasks) == 1


def test_close_waits_for_a_stuck_finalizer_only_so_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wsgi_body, "CLOSE_TIMEOUT", 0.2)
    release = threading.Event()
    finished = threading.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            await asyncio.sleep(0.01)
            yield b"b"
        finally:
            await asyncio.to_thread(release.wait, 10)
            finished.set()

    _, iterable = call(to_wsgi(StreamResponse(200, [], body())))
    assert next(iter(iterable)) == b"a"
    closable: Any = iterable
    closable.close()  # returns although the finalizer is still running
    assert not finished.is_set()
    release.set()
    assert finished.wait(5)
    deadline = time.monotonic() + 5
    while loop_tasks() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loop_tasks() == 0


def test_concurrent_first_calls_start_one_loop_and_forks_start_their_own() -> None:
    script = """
import os, threading
from streamfx.adapters.wsgi import background_loop
loops = []
threads = [threading.Thread(target=lambda: loops.append(background_loop())) for _ in range(50)]
for t in threads: t.start()
for t in threads: t.join()
assert len({id(loop) for loop in loops}) == 1 and loops[0].is_running()
parent = loops[0]
pid = os.fork()
if pid == 0:
    import asyncio
    child = background_loop()
    async def ping(): return os.getpid()
    answer = asyncio.run_coroutine_threadsafe(ping(), child).result(5)
    ok = child is not parent and answer == os.getpid()
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_a_stalled_uploader_holds_only_its_own_request(server: Server) -> None:
    if server.kind == "gunicorn-sync":
        pytest.skip("the sync worker serves one request at a time, by design")
    before = uploaded_files(server)
    body = multipart_body(UPLOAD, "b0")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
        head = (
            "POST /upload HTTP/1.1\r\nHost: test\r\n"
            "Content-Type: multipart/form-data; boundary=b0\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        stalled.sendall(head.encode() + body[:500_000])
        if server.kind != "waitress":  # waitress reads the whole body before the app runs
            server.wait_for(
                "the stalled part to be stored", lambda: uploaded_files(server) != before
            )
        reply = post_upload(server, body)
        assert reply.status_code == 200
        token = new_token("beside")
        events = httpx.get(f"{server.url}/sse?token={token}&events=2", timeout=10)
        assert len(SSEDecoder().feed(events.content)) == 2
        stored = uploaded_files(server) - before
    # The stalled client leaves: its upload is truncated, refused, and its file removed.
    server.wait_for(
        "the refused part to be removed", lambda: len(uploaded_files(server) - before) == 2
    )
    assert (uploaded_files(server) - before) < stored or server.kind == "waitress"
    server.wait_for("no task left", lambda: server.background_tasks() == 0)
