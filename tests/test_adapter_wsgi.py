"""`streamfx.adapters.wsgi` under real WSGI servers, through a Flask app.

Each test runs against waitress (in this process, on a thread) and gunicorn (a
subprocess, with the sync worker and with the gthread worker, the latter with
``--preload`` and the background loop started in the master, so that the forked
worker must start its own). Clients are httpx and raw sockets. What happened on the
server side is read from the files the app writes (see tests/wsgi_flask_app.py).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from waitress.server import TcpWSGIServer, create_server

from streamfx import SSEDecoder
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
        reply = httpx.get(f"{self.url}/tasks", timeout=10)
        reply.raise_for_status()
        tasks: int = reply.json()["tasks"]
        return tasks


def _serve_waitress(directory: Path) -> Iterator[Server]:
    previous = set_metrics(FileReportingMetrics(directory))
    server = create_server(
        create_app(str(directory)),
        host="127.0.0.1",
        port=0,
        threads=80,
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
    command += ["--log-level", "warning", "--pythonpath", str(TESTS)]
    env = dict(os.environ, STREAMFX_TEST_DIR=str(directory), STREAMFX_TEST_METRICS="1")
    if worker == "gthread":
        command += ["--threads", "80", "--preload"]
        env["STREAMFX_TEST_WARM"] = "1"
    command.append("wsgi_flask_app:create_app()")
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
    clients = 8 if server.kind == "gunicorn-sync" else 60
    tokens = [new_token("many") for _ in range(clients)]

    def one_client(token: str) -> None:
        sock = open_get(server, f"/sse?token={token}&events=2&hold=1&heartbeat=0.05")
        with sock:
            read_until(sock, b"data: 00000001")

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
    assert reply.text == "Internal Server Error\n"


def test_error_with_a_status_before_the_first_chunk_uses_it(server: Server) -> None:
    reply = httpx.get(f"{server.url}/fail?mode=status", timeout=10)
    assert reply.status_code == 403
    assert reply.text == "not allowed here\n"


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
