"""What only `streamfx.adapters.wsgi` does: files through the server's
``wsgi.file_wrapper`` (through Flask and around it), and the application called
directly, as a WSGI server would (headers, coalescing, prefetch, close, the background
loop across forks). What every adapter does, WSGI's included under waitress and
gunicorn: tests/test_adapter_contract*.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication
from wsgiref.util import setup_testing_defaults

import pytest

from streamfx import DownloadNotFound, StreamResponse, UploadTooLarge
from streamfx._response.response import HeadersInput
from streamfx.adapters.wsgi import UploadTimeout, background_loop, parts, to_wsgi
from streamfx.adapters.wsgi import _body as _wsgi_body
from streamfx.adapters.wsgi._upload import run_here
from tests._adapter_contract import (
    Deployment,
    Target,
    targets,
    unique_name,
)
from tests._client import open_raw, read_to_eof, wait_until_sync
from tests._servers import serve_waitress
from tests.apps.wsgi_app import loop_tasks

pytest_plugins = ["tests._adapter_fixtures"]  # the `deployment` fixture


@pytest.fixture(scope="module", params=targets("wsgi"))
def target(request: pytest.FixtureRequest) -> Target:
    chosen: Target = request.param
    return chosen


# -- files through the server ------------------------------------------------------------


@pytest.mark.parametrize(("offset", "length"), [(0, None), (1000, 70_000), (199_999, 1)])
async def test_file_range_goes_out_through_the_file_wrapper(
    deployment: Deployment, offset: int, length: int | None
) -> None:
    d = deployment
    data = os.urandom(200_000)
    (d.root / "data.bin").write_bytes(data)
    query = f"offset={offset}" + ("" if length is None else f"&length={length}")
    reply = await d.client.get(f"/file?{query}")
    end = len(data) if length is None else offset + length
    assert reply.status_code == 200
    assert reply.content == data[offset:end]
    assert d.tally.started == 0  # the body was never iterated


@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=1000-70999"}])
async def test_download_around_flask_goes_straight_to_the_file_wrapper(
    deployment: Deployment, headers: dict[str, str]
) -> None:
    """Without Flask between, the server gets `to_wsgi`'s own iterable."""
    d = deployment
    data = os.urandom(300_000)
    name = unique_name("raw", ".bin")
    (d.root / "files" / name).write_bytes(data)
    reply = await d.client.get(f"/raw/download/{name}", headers=headers)
    assert d.tally.count("download", "opened") == 0  # the file went, not the body
    if headers:
        assert reply.status_code == 206
        assert reply.content == data[1000:71000]
    else:
        assert reply.status_code == 200
        assert reply.content == data


def loop_turns(count: int) -> None:
    """Return once the background loop has gone round `count` more times."""
    for _ in range(count):
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), background_loop()).result(5)


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
    seen: list[tuple[str, list[Any]]] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"x"

    def respond(method: str, headers: HeadersInput) -> StreamResponse:
        seen.append((method, list(headers)))  # the WSGI adapter gives pairs
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
    def respond(method: str, headers: HeadersInput) -> StreamResponse:
        raise DownloadNotFound("no such file: a.txt")

    async def body() -> AsyncIterator[bytes]:
        yield b"never sent"

    response = StreamResponse(200, [], body(), respond_to=respond)
    started, iterable = call(to_wsgi(response))
    assert started.status == "404 Not Found"
    assert list(iterable) == [b"Not Found"]


def test_ready_chunks_leave_together_and_a_lone_chunk_at_once() -> None:
    late = threading.Event()

    async def body() -> AsyncIterator[bytes]:
        for index in range(100):  # all ready at once
            yield b"%d," % index
        await asyncio.to_thread(late.wait, 10)  # until the first answer is out
        yield b"late"

    _, iterable = call(to_wsgi(StreamResponse(200, [], body())))
    iterator = iter(iterable)
    assert next(iterator) == b"".join(b"%d," % i for i in range(100))
    late.set()
    assert list(iterator) == [b"late"]


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
    # The step found not ready is finished, and no more: a step takes a few turns of
    # the loop, and twenty turns later nothing else has been produced.
    wait_until_sync(lambda: len(produced) >= 3, "the step in flight to finish")
    loop_turns(20)
    assert produced == [0, 1, 2]
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
    wait_until_sync(lambda: loop_tasks() == 0, "the body's task to end")


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


def multipart_body(fields: list[tuple[str, str | None, str, bytes]], boundary: str) -> bytes:
    out = bytearray()
    for name, filename, content_type, content in fields:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        out += f"Content-Type: {content_type}\r\n\r\n".encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


# -- the upload helper in the request's thread (no server needed) ---------------------


def test_run_here_runs_a_step_to_its_end_without_a_loop() -> None:
    async def step() -> int:
        await asyncio.sleep(0)  # the parser's turn for others: resumed at once
        return 42

    assert run_here(step()) == 42


def test_run_here_refuses_a_step_that_needs_a_loop() -> None:
    finalized: list[bool] = []

    async def step() -> None:
        try:
            await asyncio.Future()  # a future: only a running loop could resolve it
        finally:
            finalized.append(True)

    with pytest.raises(RuntimeError, match="waited on an event loop"):
        run_here(step())
    assert finalized == [True]


@contextlib.contextmanager
def socket_request(
    body_start: bytes, length: int
) -> Iterator[tuple[socket.socket, socket.socket, dict[str, Any]]]:
    """A WSGI environ reading its body from one end of a socket pair, given as
    ``gunicorn.socket``; the other end is the client's."""
    server, client = socket.socketpair()
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    body = server.makefile("rb")
    environ.update(
        {
            "wsgi.input": body,
            "gunicorn.socket": server,
            "CONTENT_TYPE": "multipart/form-data; boundary=b0",
            "CONTENT_LENGTH": str(length),
        }
    )
    client.sendall(body_start)
    with server, client, body:
        yield server, client, environ


def read_all(environ: dict[str, Any], **options: Any) -> list[tuple[str, int]]:
    received = []
    with parts(environ, max_size=1 << 24, max_part_size=1 << 24, max_parts=10, **options) as stream:
        for part in stream:
            received.append((part.name, sum(len(chunk) for chunk in part)))
    return received


def test_a_silent_client_is_cut_by_the_socket_timeout() -> None:
    body = multipart_body([("doc", "a.txt", "text/plain", b"x" * 50_000)], "b0")
    with socket_request(body[:1000], len(body)) as (server, _client, environ):
        started = time.monotonic()
        with pytest.raises(UploadTimeout, match=r"read_timeout=0\.3"):
            read_all(environ, read_timeout=0.3, min_rate=None)
        assert time.monotonic() - started < 5
        assert server.gettimeout() is None  # given back as it was


def test_a_trickling_client_is_cut_by_shutting_its_reading_side() -> None:
    body = multipart_body([("doc", "a.txt", "text/plain", b"x" * 50_000)], "b0")
    stop = threading.Event()
    with socket_request(body[:200], len(body)) as (_server, client, environ):

        def trickle() -> None:
            for index in range(200, len(body)):
                if stop.wait(0.02):
                    return
                try:
                    client.send(body[index : index + 1])
                except OSError:
                    return

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            started = time.monotonic()
            # 50 bytes/s against 16 KiB/s: cut after read_timeout plus what the bytes
            # a read waits for would earn (MIN_READ / min_rate = 1 s).
            with pytest.raises(UploadTimeout, match="min_rate=16384"):
                read_all(environ, read_timeout=0.5, min_rate=16384)
            assert time.monotonic() - started < 10
        finally:
            stop.set()
            sender.join()


def test_a_fast_client_on_a_watched_socket_is_read_whole() -> None:
    content = os.urandom(3_000_000)
    body = multipart_body([("doc", "a.bin", "application/octet-stream", content)], "b0")
    with socket_request(b"", len(body)) as (server, client, environ):
        sender = threading.Thread(target=client.sendall, args=(body,))
        sender.start()
        assert read_all(environ, read_timeout=5.0, min_rate=1024) == [("doc", len(content))]
        assert server.gettimeout() is None
        sender.join()


def bytes_request(body: bytes) -> dict[str, Any]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(
        {
            "wsgi.input": io.BytesIO(body),
            "CONTENT_TYPE": "multipart/form-data; boundary=b0",
            "CONTENT_LENGTH": str(len(body)),
        }
    )
    return environ


def test_a_wsgi_part_saves_like_a_part(tmp_path: Path) -> None:
    content = os.urandom(700_000)
    body = multipart_body([("doc", "../../etc/a.bin", "application/octet-stream", content)], "b0")
    with parts(
        bytes_request(body), max_size=1 << 24, max_part_size=1 << 24, max_parts=10
    ) as stream:
        part = next(stream)
        assert (part.filename, part.raw_filename) == ("a.bin", "../../etc/a.bin")
        saved = part.save(tmp_path)
    assert saved == tmp_path / "a.bin"
    assert saved.read_bytes() == content
    again = multipart_body([("doc", "a.bin", "application/octet-stream", b"x")], "b0")
    with (
        parts(
            bytes_request(again), max_size=1 << 24, max_part_size=1 << 24, max_parts=10
        ) as stream,
        pytest.raises(FileExistsError),
    ):
        next(stream).save(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.bin"]


def test_a_refused_wsgi_save_leaves_nothing(tmp_path: Path) -> None:
    body = multipart_body([("doc", "big.bin", "application/octet-stream", b"x" * 900_000)], "b0")
    with (
        parts(bytes_request(body), max_size=1 << 24, max_part_size=500_000, max_parts=10) as stream,
        pytest.raises(UploadTooLarge, match="max_part_size=500000"),
    ):
        next(stream).save(tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- a client that stops reading, under waitress ---------------------------------------


def stalling_app(finalized: threading.Event) -> WSGIApplication:
    """``/endless``: 64 KiB chunks for ever (write timeout 0.3 s), `finalized` set when
    its body is closed; anything else: ``pong``."""

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x" * 65536
                await asyncio.sleep(0)
        finally:
            finalized.set()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/endless":
            response = StreamResponse(200, [], endless())
            return to_wsgi(response, write_timeout=0.3)(environ, start_response)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"pong"]

    return app


async def test_under_waitress_the_write_timeout_frees_the_thread_and_closes_the_connection() -> (
    None
):
    """With one request thread: a client that stops reading holds it until the write
    timeout; then the thread is free at once (the next request is answered) and the
    stalled connection is closed, while that client is still there, not reading."""
    finalized = threading.Event()
    async with serve_waitress(stalling_app(finalized), threads=1) as (_, port):
        with await open_raw(port, "/endless", rcvbuf=4096) as stalled:  # never reads
            assert await asyncio.to_thread(finalized.wait, 10), "the body was never closed"
            with await open_raw(port, "/ping", http10=True) as pinging:
                # before: the one thread stayed in its write, and this waited for it
                answer = await read_to_eof(pinging, seconds=5)
            assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"pong")
            with contextlib.suppress(ConnectionResetError):  # closed: reset, or EOF after
                await read_to_eof(stalled, seconds=5)  # what was held for it (a timeout fails)
