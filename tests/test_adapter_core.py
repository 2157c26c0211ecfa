"""`streamfx.adapters._common`: what every adapter shares (the error answer, the
argument checks, the write-timeout rule), and the write-timeout rule applied the same
by every adapter under real servers (tests/_every_adapter.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import socket
import weakref
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx import (
    CircuitOpenError,
    DownloadNotFound,
    MalformedUpload,
    StreamfxError,
    UploadTooLarge,
)
from streamfx.adapters._common import (
    MAX_MESSAGE,
    WriteWatchdog,
    answer_error,
    check_seconds,
    check_write_timeout,
    error_status,
    error_text,
)
from streamfx.broadcast import BroadcastError
from tests._every_adapter import CHUNK, SITES, Counts, Site, running

logger = logging.getLogger("tests.adapter_core")


class WithStatus(Exception):
    """Not a streamfx error, though it carries the attributes one has."""

    def __init__(self, message: str, status: object) -> None:
        super().__init__(message)
        self.status = self.status_code = status
        self.detail = message


# -- the error answer --------------------------------------------------------------------


@given(st.integers(400, 599), st.text())
def test_a_streamfx_error_is_answered_with_its_status_and_detail(status: int, detail: str) -> None:
    error = StreamfxError("server side: /srv/x", status_code=status, detail=detail)
    assert error_status(error) == status
    shown = " ".join(detail.split())[:MAX_MESSAGE]
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    assert error_text(error) == (shown or phrase).encode()


@given(st.one_of(st.integers(), st.booleans(), st.none(), st.text(), st.floats()), st.text())
def test_anything_else_is_a_500_with_the_phrase_only(status: object, message: str) -> None:
    error = WithStatus(message, status)
    assert error_status(error) == 500
    assert error_text(error) == b"Internal Server Error"


@given(st.text())
def test_an_upload_errors_message_is_shown_on_one_short_line(message: str) -> None:
    body = error_text(MalformedUpload(message)).decode()
    assert body == " ".join(message.split())[:MAX_MESSAGE] or body == "Bad Request"
    assert len(body) <= MAX_MESSAGE
    assert "\n" not in body and "\r" not in body


def test_the_answer_has_its_length_and_type_and_logs_the_detail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=logger.name)
    missing = DownloadNotFound("no such file: /srv/files/a.txt")
    broken = RuntimeError("password=hunter2 in /etc/app.conf")
    too_large = UploadTooLarge("the upload is larger than 10 bytes")

    assert answer_error(missing, logger).body == b"Not Found"
    assert answer_error(broken, logger).status == 500
    answer = answer_error(too_large, logger)
    assert (answer.status, answer.body) == (413, b"the upload is larger than 10 bytes")
    assert answer.headers == [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(answer.body))),
    ]
    levels = [(record.levelno, record.exc_info and record.exc_info[1]) for record in caplog.records]
    assert levels == [(logging.INFO, missing), (logging.ERROR, broken), (logging.INFO, too_large)]
    assert "/srv/files/a.txt" in caplog.records[0].getMessage()


def test_an_open_circuit_is_a_503_with_retry_after_in_whole_seconds() -> None:
    answer = answer_error(CircuitOpenError("db", 2.1), logger)
    assert (answer.status, answer.body) == (503, b"Service Unavailable")
    assert ("Retry-After", "3") in answer.headers
    assert b"db" not in answer.body  # the breaker's name stays in the log
    assert ("Retry-After", "0") in answer_error(CircuitOpenError("", 0.0), logger).headers


def test_a_closed_hub_is_a_503() -> None:
    answer = answer_error(BroadcastError("this hub is closed"), logger)
    assert (answer.status, answer.body) == (503, b"Service Unavailable")


def test_an_upload_error_is_answered_with_its_detail_and_closes() -> None:
    class Detailed(MalformedUpload):
        def __init__(self) -> None:
            super().__init__("the internal wording")
            self.detail = "what the client is told"

    answer = answer_error(Detailed(), logger)
    assert (answer.status, answer.body, answer.close) == (400, b"what the client is told", True)
    assert not answer_error(DownloadNotFound("gone"), logger).close


# -- the argument checks -----------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, -0.5, math.nan, True, "1", None])
def test_seconds_must_be_a_positive_number(value: object) -> None:
    with pytest.raises(ValueError, match="disconnect_check must be positive"):
        check_seconds("disconnect_check", value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -3, math.nan, False])
def test_a_write_timeout_must_be_positive_or_none(value: object) -> None:
    with pytest.raises(ValueError, match="write_timeout must be positive"):
        check_write_timeout(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, 0.001, 1, 60.0, math.inf])
def test_good_write_timeouts_pass(value: float | None) -> None:
    check_write_timeout(value)


# -- the write-timeout rule (one watchdog) -----------------------------------------------


class Stalls:
    """Records each `on_stall` call with the loop time it came at."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.times.append(asyncio.get_running_loop().time())
        self.event.set()


async def passed(seconds: float) -> None:
    """Return once every loop timer due within `seconds` from now has run (timers run
    in the order of their times: one scheduled after them runs after them)."""
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, done.set)
    await done.wait()


async def test_a_chunk_that_waits_the_write_timeout_stalls_once() -> None:
    stalls = Stalls()
    watchdog = WriteWatchdog(0.2, stalls, logger)
    loop = asyncio.get_running_loop()
    began = loop.time()
    watchdog.writing()  # and never written
    async with asyncio.timeout(5):
        await stalls.event.wait()
    assert stalls.times[0] - began >= 0.2
    await passed(0.5)
    assert len(stalls.times) == 1


async def test_a_client_that_keeps_taking_chunks_is_never_cut() -> None:
    stalls = Stalls()
    watchdog = WriteWatchdog(0.5, stalls, logger)
    for _ in range(20):  # 1 s of sending: twice the write timeout
        watchdog.writing()
        await asyncio.sleep(0.05)
        watchdog.written()
    await passed(0.6)
    assert stalls.times == []
    watchdog.stop()


async def test_an_idle_stream_is_never_cut_and_the_clock_starts_with_a_chunk() -> None:
    stalls = Stalls()
    watchdog = WriteWatchdog(0.2, stalls, logger)
    watchdog.writing()
    watchdog.written()
    await passed(0.5)  # idle: nothing waits
    assert stalls.times == []
    began = asyncio.get_running_loop().time()
    watchdog.writing()
    async with asyncio.timeout(5):
        await stalls.event.wait()
    assert stalls.times[0] - began >= 0.2


async def test_a_stopped_watchdog_lets_go_of_its_on_stall() -> None:
    """An adapter's watch holds its watchdog, whose `on_stall` is the watch's bound
    method: once stopped, the watchdog drops it, and the watch (with the request it
    holds) goes as soon as nothing else holds it, not at the next full collection."""

    class Watch:
        def __init__(self) -> None:
            self.writes = WriteWatchdog(0.1, self.stalled, logger)

        def stalled(self) -> None:
            raise AssertionError("stopped: never called")

    watch = Watch()
    watch.writes.writing()
    gc.collect()
    gc.disable()
    try:
        watch.writes.stop()
        gone = weakref.ref(watch)
        del watch
        assert gone() is None
    finally:
        gc.enable()


async def test_a_stopped_or_unlimited_watchdog_never_calls() -> None:
    stalls = Stalls()
    stopped = WriteWatchdog(0.1, stalls, logger)
    stopped.writing()
    stopped.stop()
    stopped.writing()  # after stop: not watched
    stopped.stop()
    unlimited = WriteWatchdog(None, stalls, logger)
    unlimited.writing()
    await passed(0.4)
    assert stalls.times == []


async def test_watchdogs_share_one_loop_timer() -> None:
    """Issue 13, idle memory: every response's write timeout used to hold a
    `TimerHandle` (and a libuv timer under uvloop) for up to `write_timeout` after each
    write; they share the loop's one timer now, and the stalled one is still caught."""
    loop = asyncio.get_running_loop()
    before = [t for t in loop._scheduled if not t.cancelled()]  # type: ignore[attr-defined]
    stalls = Stalls()
    watchdogs = [WriteWatchdog(0.2 + n / 1000, stalls, logger) for n in range(100)]
    for watchdog in watchdogs:
        watchdog.writing()
    for watchdog in watchdogs[1:]:
        watchdog.written()
    timers = [t for t in loop._scheduled if not t.cancelled()]  # type: ignore[attr-defined]
    assert len(timers) - len(before) <= 1
    async with asyncio.timeout(5):
        await stalls.event.wait()
    await passed(0.3)
    assert len(stalls.times) == 1, "only the chunk that waited stalls"
    for watchdog in watchdogs:
        watchdog.stop()


async def test_the_stall_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=logger.name)
    stalls = Stalls()
    WriteWatchdog(0.05, stalls, logger).writing()
    async with asyncio.timeout(5):
        await stalls.event.wait()
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert "took nothing for 0.05 s" in record.getMessage()


class LoopTurns:
    """Counts the turns of the running event loop (a callback that schedules itself
    once per turn) until stopped."""

    def __init__(self) -> None:
        self.count = 0
        self.running = True
        asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        self.count += 1
        if self.running:
            asyncio.get_running_loop().call_soon(self._turn)


async def test_stalls_due_together_are_handled_one_per_loop_turn() -> None:
    """Clients that stalled at the same moment (connected together, their buffers full
    together) are evicted one per turn of the event loop, not all in one turn: each
    eviction's work then interleaves with the other streams' instead of holding them
    all up at once (the soak's readers scenario, 200 stalled clients)."""
    turns = LoopTurns()
    seen: list[int] = []
    done = asyncio.Event()
    count = 20

    def stalled() -> None:
        seen.append(turns.count)
        if len(seen) == count:
            done.set()

    watchdogs = [WriteWatchdog(0.05, stalled, logger) for _ in range(count)]
    for watchdog in watchdogs:
        watchdog.writing()  # and never written
    async with asyncio.timeout(5):
        await done.wait()
    turns.running = False
    assert len(set(seen)) == count, seen


async def test_a_stream_that_ends_while_its_eviction_waits_its_turn_is_left_alone() -> None:
    stalls = Stalls()
    first_stalled = asyncio.Event()
    watchdogs: list[WriteWatchdog] = []

    def stall_and_end_the_others() -> None:
        first_stalled.set()
        for watchdog in watchdogs[1:]:
            watchdog.stop()  # these streams ended (completed, say) before their turn

    watchdogs.append(WriteWatchdog(0.05, stall_and_end_the_others, logger))
    watchdogs += [WriteWatchdog(0.05, stalls, logger) for _ in range(5)]
    for watchdog in watchdogs:
        watchdog.writing()
    async with asyncio.timeout(5):
        await first_stalled.wait()
    await passed(0.2)
    assert stalls.times == []


# -- the rule under every adapter and a real server --------------------------------------


@pytest.fixture(params=SITES)
def site_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


async def settle(condition: Callable[[], bool], seconds: float) -> None:
    """Wait (polling) up to `seconds` for `condition`; fail if it never holds."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - polling counters the app updates
            await asyncio.sleep(0.01)


async def connect(url: str, rcvbuf: int) -> socket.socket:
    """A non-blocking socket to `url`'s server with a small receive buffer (set before
    connecting, so the kernel does not grow it: the client really is slow)."""
    host, _, port = url.removeprefix("http://").partition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return sock


async def send_get(sock: socket.socket, target: str) -> None:
    request = f"GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    await asyncio.get_running_loop().sock_sendall(sock, request.encode())


async def test_a_client_that_stops_reading_is_gone_after_the_write_timeout(
    site_name: str, tmp_path: Path
) -> None:
    counts = Counts()
    async with running(site_name, Site(tmp_path, counts)) as url:
        sock = await connect(url, rcvbuf=4096)
        try:
            await send_get(sock, "/endless?write_timeout=0.3")  # and never reads
            await settle(lambda: counts.started == 1, seconds=5)
            await settle(lambda: counts.finalized == 1, seconds=10)
            # the buffers on the way filled up, then the stall was noticed and cut
            assert counts.produced < 1000
        finally:
            sock.close()


# One site per way the rule is applied (Quart and Django share theirs).
STEADY_SITES = ("asgi-uvicorn", "quart-hypercorn", "django-uvicorn", "aiohttp", "wsgi-waitress")


@pytest.mark.parametrize("steady_site", STEADY_SITES)
async def test_a_client_that_takes_each_chunk_in_time_is_never_cut(
    steady_site: str, tmp_path: Path
) -> None:
    """16 MiB (more than the buffers on the way hold, so the server's sends wait on the
    client) read through a 16 KiB socket buffer with a 2 ms pause after each read: the
    stream lasts longer than the write timeout of 2 s (about 3 s here), while one chunk
    waits at most about 0.35 s (until the kernel has half of its send buffer, up to
    4 MiB, delivered: see `WriteWatchdog`)."""
    counts = Counts()
    chunks = 256
    async with running(steady_site, Site(tmp_path, counts)) as url:
        sock = await connect(url, rcvbuf=16 * 1024)
        client = h11.Connection(h11.CLIENT)
        received = 0
        status = 0
        ended = False
        loop = asyncio.get_running_loop()
        try:
            await send_get(sock, f"/sized?chunks={chunks}&write_timeout=2")
            async with asyncio.timeout(60):
                while not ended:
                    data = await loop.sock_recv(sock, 65536)
                    client.receive_data(data)
                    while (event := client.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                        if isinstance(event, h11.Response):
                            status = event.status_code
                        elif isinstance(event, h11.Data):
                            received += len(event.data)
                        elif isinstance(event, h11.EndOfMessage):
                            ended = True
                    if not data:
                        break
                    await asyncio.sleep(0.002)
        finally:
            sock.close()
        await settle(lambda: counts.finalized == 1, seconds=5)
    assert status == 200
    assert ended, f"the body was cut after {received} bytes"
    assert received == chunks * CHUNK
    assert counts.produced == chunks
