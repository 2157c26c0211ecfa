"""Uploads through every adapter's helper under its real server: the attack table
(tests/_upload_rows.py), the declared length, the read rule, and the connection after a
refusal.

Sites (one server process each, shared by the module; `tests/apps/upload_apps.py`):
``parts(request)`` in Starlette under uvicorn and under hypercorn and in FastAPI under
uvicorn, aiohttp's ``parts(request)``, and WSGI's ``parts(environ)`` in Flask under
gunicorn's gthread worker (4 threads) and under waitress. Quart's and Django's
``parts`` are checked by the contract suite (tests/test_adapter_contract_transfers.py)
and their own modules (tests/test_adapter_quart.py, tests/test_adapter_django.py).
The client is a raw socket (`tests._upload_client`) that sends while it reads, so a
test sees how many bytes of the body were sent before the answer began; the server's
listening socket has a small receive buffer, so that number is close to what the
server could have read.

Every request checks, besides its answer, what every adapter promises whatever the
answer: the serving process's peak memory grew by less than `MEMORY_GROWTH`, its event
loop never went more than `STALL` CPU seconds without a turn (the loop the upload is
parsed on, for the ASGI servers and aiohttp; for the WSGI servers, which parse it in
the request's thread, the process's background loop, in CPU time of the whole process:
a request thread that kept the GIL would stall it), and no file is left in the route's
store or in the server's temporary directory (the route saves every file with
``part.save``).

Waitress reads a request's whole body (into memory, then a temporary file) before it
calls the application, and refuses a ``Content-Length`` over its own
``max_request_body_size`` itself. So there a refusal cannot come before the body was
sent (`BUFFERS_BODY`), the read rule has no read to time (a slow client holds no
thread: waitress's I/O thread buffers it), and a declared gibibyte is waitress's own
413. Those tests say so for that site and check what waitress does instead.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from streamfx._upload.limits import (
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_PREAMBLE_SIZE,
)
from tests._upload_client import Connection, Reply, pieces, request_head, small_listener
from tests._upload_rows import LIMITS as UPLOAD_LIMITS
from tests._upload_rows import ROWS, STALL, Row

DEFAULT_LIMITS = {
    "max_headers": DEFAULT_MAX_HEADERS,
    "max_header_size": DEFAULT_MAX_HEADER_SIZE,
    "max_preamble_size": DEFAULT_MAX_PREAMBLE_SIZE,
}

ROOT = Path(__file__).resolve().parent.parent
SITES = ("uvicorn", "fastapi", "hypercorn", "aiohttp", "gunicorn", "waitress")
BUFFERS_BODY = {"waitress"}
"""Sites whose server reads the whole body before it calls the application."""
BOUNDARY = "----streamfxAdapterRows7MA4YWxk"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
IN_FLIGHT = 1 << 20
"""The most body bytes a client may have sent before a refusal that needs none of them:
the socket buffers between the two (64 KiB each way, doubled by Linux) and what a
server reads ahead (gunicorn: up to 1 MiB at once; our small receive buffer keeps it
near 128 KiB)."""
MEMORY_GROWTH = 16 << 10
"""KiB: the most a serving process's peak memory may grow in one request."""
HEADER_LIMIT = {"gunicorn": 8190, "aiohttp": 8190}
"""The longest request header line the server lets through to the application."""
GIB = 1 << 30
MIB = 1 << 20
GUNICORN_THREADS = 4


@dataclass
class Site:
    name: str
    port: int
    store: Path
    tmp: Path
    log: Path

    def url(self, options: dict[str, Any]) -> str:
        return f"/upload?options={quote(json.dumps(options))}"

    def report(self) -> tuple[int, float]:
        """The serving process's peak memory (KiB), and the longest its event loop went
        without a turn since the last report (CPU seconds)."""
        with Connection(self.port) as connection:
            head = b"GET /rss HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
            reply = connection.exchange(head, timeout=20)
        assert reply.status == 200, reply
        report = json.loads(reply.body)
        return report["rss"], report["stall"]

    def leftovers(self) -> list[str]:
        return sorted(path.name for path in [*self.store.iterdir(), *self.tmp.iterdir()])


def _start(name: str, directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    listener = small_listener()
    fd = listener.fileno()
    env = dict(
        os.environ,
        STREAMFX_UPLOAD_STORE=str(directory / "store"),
        TMPDIR=str(directory / "tmp"),
    )
    if name == "gunicorn":
        command = [sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", "--workers", "1"]
        command += ["--worker-class", "gthread", "--threads", str(GUNICORN_THREADS)]
        command += ["--log-level", "warning", "tests.apps.upload_apps:flask_app()"]
    else:
        command = [sys.executable, "-m", "tests.apps.upload_apps", name, str(fd)]
    with (directory / "server.log").open("wb") as log:
        process = subprocess.Popen(
            command, pass_fds=(fd,), env=env, cwd=ROOT, stdout=log, stderr=log
        )
    port: int = listener.getsockname()[1]
    listener.close()
    return process, port


@pytest.fixture(scope="module", params=SITES)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    name: str = request.param
    directory = tmp_path_factory.mktemp(f"upload-{name}")
    (directory / "store").mkdir()
    (directory / "tmp").mkdir()
    process, port = _start(name, directory)
    served = Site(name, port, directory / "store", directory / "tmp", directory / "server.log")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                served.report()
                break
            except (OSError, AssertionError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(served.log.read_text()) from None
                time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            process.kill()
            process.wait()


@pytest.fixture
def checked(site: Site) -> Iterator[Site]:
    """`site`, and afterwards: memory grew by less than `MEMORY_GROWTH`, the loop was
    never held longer than `STALL`, nothing left."""
    before, _ = site.report()
    yield site
    ended = time.monotonic()
    deadline = ended + 10  # a refused request's cleanup may still be running
    while site.leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not site.leftovers(), late_cleanup(site, ended)
    after, stall = site.report()
    assert after - before < MEMORY_GROWTH, f"peak RSS grew by {after - before} KiB"
    assert stall <= STALL, f"the event loop went {stall:.3f} CPU seconds without a turn"


LATE_S = 50.0
"""How long a failed leftovers check goes on watching, to say whether the cleanup came
late or never (the check has failed already: this only makes the report say more)."""


def late_cleanup(site: Site, ended: float) -> str:
    """The report of a leftovers check that failed: what was left (every file, with its
    size), whether and when it went (watched for `LATE_S` more seconds), and the end of
    the server's log."""
    left = []
    for path in sorted([*site.store.rglob("*"), *site.tmp.rglob("*")]):
        try:
            size = "a directory" if path.is_dir() else f"{path.stat().st_size} B"
        except FileNotFoundError:
            size = "gone meanwhile"
        left.append(f"{path.relative_to(site.store.parent)} ({size})")
    deadline = time.monotonic() + LATE_S
    while site.leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    waited = time.monotonic() - ended
    fate = f"still there {waited:.0f} s after" if site.leftovers() else f"gone {waited:.1f} s after"
    log = site.log.read_text(errors="replace").splitlines()[-20:]
    return "\n".join(
        [f"left 10 s after the test: {left}; {fate} the test's end", "server log:", *log]
    )


# -- bodies ------------------------------------------------------------------------------


def file_head(name: str = "file", filename: str = "a.bin") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()


def closing() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


def one_file(size: int) -> bytes:
    return file_head() + b"x" * size + closing()


def endless_file() -> Iterator[bytes]:
    """A file part that never ends, in 64 KiB pieces."""
    yield file_head()
    block = b"x" * (64 * 1024)
    while True:
        yield block


def trickle(data: bytes) -> Iterator[bytes]:
    """`data` a byte at a time."""
    for index in range(len(data)):
        yield data[index : index + 1]


# -- the attack table ---------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_attack_row(checked: Site, row: Row) -> None:
    """A row of the attack table through the adapter: the status, the limit named to
    the client, how much of the body was sent before the answer began (the row's bound,
    plus what sockets and the server hold in flight), the parts and saved files of an
    accepted upload (and, by `checked`: memory, the loop, nothing left)."""
    length = sum(len(chunk) for chunk in row.chunks())
    head = request_head(f"/upload?row={quote(row.id)}", length, row.content_type)
    with Connection(checked.port) as connection:
        reply = connection.exchange(head, row.chunks(), timeout=120)
    if len(row.content_type) > HEADER_LIMIT.get(checked.name, len(row.content_type)):
        # The server refuses the request's own header before the application runs
        # (gunicorn 431, aiohttp 400): the attack never reaches the helper.
        assert 400 <= reply.status < 500, reply
        assert 0 <= reply.sent_at_answer <= IN_FLIGHT, reply
        return
    assert reply.status == (row.status or 200), reply
    if checked.name in BUFFERS_BODY:
        assert reply.sent_at_answer == length, reply  # the server read it all first
    elif row.read_at_most is not None:
        assert 0 <= reply.sent_at_answer <= row.read_at_most + IN_FLIGHT, reply
    if row.status is None:
        answer = json.loads(reply.body)
        if row.parts is not None:
            assert [(name, filename) for name, filename, _ in answer["parts"]] == list(row.parts)
        assert len(answer["files"]) == len(row.files_left)
        for name, pattern in zip(sorted(answer["files"]), sorted(row.files_left), strict=True):
            assert fnmatch.fnmatch(name, pattern), (name, pattern)
    elif row.limit is not None:
        value = {**DEFAULT_LIMITS, **UPLOAD_LIMITS, **row.options}[row.limit]
        assert f"({row.limit}={value})" in reply.text, reply.text


# -- the declared length (issue 14, item 5) ----------------------------------------------


def test_a_declared_length_over_max_size_is_refused_before_the_body(checked: Site) -> None:
    options = {"max_size": 32 * MIB, "max_part_size": 32 * MIB, "max_parts": 10}
    head = request_head(checked.url(options), GIB, CONTENT_TYPE)
    with Connection(checked.port) as connection:
        reply = connection.exchange(head, endless_file(), timeout=30)
        assert reply.status == 413, reply
        assert 0 <= reply.sent_at_answer <= IN_FLIGHT, reply
        if checked.name in BUFFERS_BODY:
            # waitress's own refusal (max_request_body_size): the app never runs
            assert "max_size" not in reply.text
        else:
            assert "max_size=33554432" in reply.text
        # The connection is not kept for the gibibyte still to come: the server closes
        # it (aiohttp and gunicorn after a bounded lingering read).
        assert connection.closed_by_server(10)


def test_a_small_refused_body_leaves_a_usable_connection_or_none(checked: Site) -> None:
    body = one_file(5000)
    options = {"max_size": 1000, "max_part_size": 1000, "max_parts": 10}
    with Connection(checked.port) as connection:
        reply = connection.exchange(
            request_head(checked.url(options), len(body), CONTENT_TYPE), [body]
        )
        assert reply.status == 413, reply
        assert reply.sent == len(body)  # a client that sends all before it reads
        if reply.headers.get("connection") == "close":
            assert connection.closed_by_server(10)
            return
        # Kept: the next request on it is answered as a request, not as body bytes.
        again = connection.exchange(b"GET /rss HTTP/1.1\r\nHost: test\r\n\r\n", timeout=20)
        if again.status == 0 and connection.closed_by_server(0.1):
            return  # hypercorn closes a connection whose body was not read
        assert again.status == 200, again
        assert json.loads(again.body)["rss"] > 0


# -- the read rule (issue 14, item 6) ----------------------------------------------------


LIMITS = {"max_size": 10 * MIB, "max_part_size": 10 * MIB, "max_parts": 10}


def no_read_to_time(site: Site) -> None:
    if site.name in BUFFERS_BODY:
        pytest.skip(
            f"{site.name} reads the whole body before it calls the application: the helper "
            "has no read to time, and a slow client holds no thread (its I/O thread "
            "buffers the body; its own channel_timeout applies)"
        )


def test_a_client_that_stops_sending_gets_408(checked: Site) -> None:
    no_read_to_time(checked)
    options = {**LIMITS, "read_timeout": 1.0}
    body = one_file(100_000)
    head = request_head(checked.url(options), len(body), CONTENT_TYPE)
    with Connection(checked.port) as connection:
        reply = connection.exchange(head, [body[:1000]], timeout=20)
    assert reply.status == 408, reply
    assert "read_timeout=1" in reply.text


def test_a_client_trickling_bytes_gets_408(checked: Site) -> None:
    no_read_to_time(checked)
    options = {**LIMITS, "read_timeout": 1.0, "min_rate": 16384}
    body = one_file(100_000)
    head = request_head(checked.url(options), len(body), CONTENT_TYPE)
    with Connection(checked.port) as connection:
        reply = connection.exchange(head, trickle(body), pace=0.05, timeout=30)
    assert reply.status == 408, reply
    assert "min_rate=16384" in reply.text
    assert reply.sent_at_answer < 200  # a few seconds at 20 bytes per second


def test_a_client_above_min_rate_is_never_refused(checked: Site) -> None:
    options = {**LIMITS, "read_timeout": 2.0, "min_rate": 16384}
    body = one_file(96 * 1024)
    head = request_head(checked.url(options), len(body), CONTENT_TYPE)
    with Connection(checked.port) as connection:  # 64 KiB/s: four times min_rate
        reply = connection.exchange(head, pieces(body, 8192), pace=0.125, timeout=30)
    assert reply.status == 200, reply
    assert json.loads(reply.body)["parts"] == [["file", "a.bin", 96 * 1024]]


def test_trickling_clients_hold_no_server_for_long(checked: Site) -> None:
    """As many trickling clients as gunicorn has threads: each is refused, and then an
    honest upload is served (before the read rule, gunicorn's worker was theirs for as
    long as they kept trickling). Under waitress, which buffers bodies in its I/O
    thread, the honest upload is served while the trickling ones are still sending,
    unanswered."""
    options = {**LIMITS, "read_timeout": 1.0, "min_rate": 16384}
    body = one_file(100_000)
    head = request_head(checked.url(options), len(body), CONTENT_TYPE)
    buffers = checked.name in BUFFERS_BODY

    def slow() -> Reply:
        with Connection(checked.port) as connection:
            return connection.exchange(head, trickle(body), pace=0.05, timeout=3 if buffers else 30)

    with ThreadPoolExecutor(GUNICORN_THREADS) as pool:
        trickling = [pool.submit(slow) for _ in range(GUNICORN_THREADS)]
        time.sleep(0.3)  # let them take the server's threads first
        honest = one_file(1000)
        with Connection(checked.port) as connection:
            reply = connection.exchange(
                request_head(checked.url(LIMITS), len(honest), CONTENT_TYPE), [honest], timeout=30
            )
        assert reply.status == 200, reply
        statuses = [future.result().status for future in trickling]
        assert statuses == [0 if buffers else 408] * GUNICORN_THREADS


# -- a body whose transfer framing breaks mid-upload ---------------------------------------


def test_a_broken_chunked_body_is_refused_and_leaves_nothing(checked: Site) -> None:
    """A chunked body whose chunk framing breaks after a first chunk of a file part:
    the server or the helper refuses it with a 4xx, or the server drops the
    connection; never a 200 and never a hang, and (by `checked`) nothing is left of
    the part the route had begun to save. (aiohttp answers 400 itself when the bad
    chunk comes with the request's head; when it comes later, its C parser sometimes
    leaves the body open without an error, and the read rule ends the wait: 408.)"""
    start = file_head() + b"x" * 5000
    head = (
        f"POST {checked.url({**LIMITS, 'read_timeout': 2.0})} HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: {CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    body = [b"%x\r\n" % len(start) + start + b"\r\n", b"zz-not-a-size\r\n" + b"y" * 100]
    with Connection(checked.port) as connection:
        reply = connection.exchange(head, body, timeout=20)
        if reply.status == 0:
            assert connection.closed_by_server(10), reply
        else:
            assert 400 <= reply.status < 500, reply


# -- the leftovers check's report ------------------------------------------------------------


def test_a_late_cleanup_is_reported_with_what_was_left_and_when_it_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for folder in ("store", "tmp"):
        (tmp_path / folder).mkdir()
    (tmp_path / "server.log").write_text("line 1\nthe last line\n")
    site = Site("x", 0, tmp_path / "store", tmp_path / "tmp", tmp_path / "server.log")
    request = site.store / "request"
    request.mkdir()
    (request / ".part.upload-part").write_bytes(b"x" * 5)
    (site.tmp / "stray").write_bytes(b"")

    def clean_up() -> None:
        (request / ".part.upload-part").unlink()
        request.rmdir()
        (site.tmp / "stray").unlink()

    timer = threading.Timer(0.3, clean_up)
    timer.start()
    report = late_cleanup(site, time.monotonic())
    timer.join()
    assert "store/request (a directory)" in report
    assert "store/request/.part.upload-part (5 B)" in report
    assert "tmp/stray (0 B)" in report
    assert "gone 0." in report and report.endswith("the last line")
    (site.tmp / "stray").write_bytes(b"")
    monkeypatch.setattr(sys.modules[__name__], "LATE_S", 0.2)
    assert "still there 0 s after" in late_cleanup(site, time.monotonic())
