"""The read rule and the declared length every adapter's upload helper applies
(`streamfx.adapters._upload_body`), on a fake clock. Through real servers:
tests/test_upload_adapters.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx import UploadError, UploadTooLarge
from streamfx.adapters._common import answer_error
from streamfx.adapters._upload_body import (
    MIN_RATE,
    READ_TIMEOUT,
    ReadRule,
    ReadTimer,
    UploadTimeout,
    content_length,
    parse_upload,
    refuse_declared_length,
    timed_body,
)
from streamfx.adapters._upload_refusal import BodyState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait(rule: ReadRule, clock: Clock, seconds: float, size: int) -> float | None:
    """One wait of `seconds` that brings `size` bytes; what `wait_started` allowed."""
    allowed = rule.wait_started()
    clock.now += seconds
    rule.wait_ended(size)
    return allowed


def test_the_defaults() -> None:
    assert (READ_TIMEOUT, MIN_RATE) == (30.0, 1024)
    rule = ReadRule(READ_TIMEOUT, MIN_RATE)
    assert (rule.read_timeout, rule.min_rate, rule.enabled) == (30.0, 1024, True)


def test_a_timeout_is_408_with_the_argument_named() -> None:
    clock = Clock()
    rule = ReadRule(2.5, None, clock)
    assert rule.wait_started() == 2.5
    error = rule.expired()
    assert isinstance(error, UploadError)
    assert error.status_code == 408
    assert error.detail == "the client sent no upload data for 2.5 s (read_timeout=2.5)"
    answer = answer_error(error, __import__("logging").getLogger("test"))
    assert answer.status == 408
    assert answer.body == error.detail.encode()


@pytest.mark.parametrize(
    ("read_timeout", "min_rate", "message"),
    [
        (0, None, "read_timeout must be a positive number"),
        (-1.0, None, "read_timeout must be a positive number"),
        (float("nan"), None, "read_timeout must be a positive number"),
        (float("inf"), None, "read_timeout must be a positive number"),
        (True, None, "read_timeout must be a positive number"),
        ("30", None, "read_timeout must be a positive number"),
        (30.0, 0, "min_rate must be a positive int"),
        (30.0, 1.5, "min_rate must be a positive int"),
        (30.0, True, "min_rate must be a positive int"),
        (None, 1024, "min_rate is counted against read_timeout"),
    ],
)
def test_bad_arguments_are_refused(read_timeout: object, min_rate: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReadRule(read_timeout, min_rate)  # type: ignore[arg-type]


def test_without_a_read_timeout_nothing_is_ever_refused() -> None:
    clock = Clock()
    rule = ReadRule(None, None, clock)
    assert not rule.enabled
    assert wait(rule, clock, 1e9, 1) is None
    assert rule.deadline is None


def test_silence_is_refused_after_read_timeout_whatever_came_before() -> None:
    clock = Clock()
    rule = ReadRule(30.0, 1024, clock)
    wait(rule, clock, 0.01, 50 << 20)  # a burst earns no more than read_timeout
    assert rule.wait_started() == 30.0
    assert rule.deadline == clock.now + 30.0
    assert "read_timeout=30" in rule.expired().detail


def test_a_trickle_is_refused_and_told_it_was_too_slow() -> None:
    clock = Clock()
    rule = ReadRule(10.0, 1000, clock)
    with pytest.raises(UploadTimeout) as caught:
        for _ in range(1000):
            allowed = rule.wait_started()
            assert allowed is not None
            if allowed < 0.5:  # the adapter cuts the wait when it is over
                clock.now += allowed
                raise rule.expired()
            clock.now += 0.5
            rule.wait_ended(1)
    assert caught.value.detail == (
        "the client sent the upload slower than min_rate=1000 bytes per second (read_timeout=10)"
    )
    # 2 bytes per second against 1000: refused after about read_timeout.
    assert 1000.0 + 10.0 <= clock.now <= 1000.0 + 10.0 * 1000 / 998 + 0.5


def test_a_wait_that_could_not_be_cut_is_refused_when_it_ends() -> None:
    clock = Clock()
    rule = ReadRule(1.0, 100, clock)
    rule.wait_started(size=50)  # a blocking read: 1 s + 50 bytes' worth (0.5 s)
    assert rule.deadline == pytest.approx(clock.now + 1.5)
    clock.now += 2.0
    with pytest.raises(UploadTimeout, match="min_rate=100"):
        rule.wait_ended(50)


def test_a_blocking_read_is_given_what_its_size_earns() -> None:
    clock = Clock()
    rule = ReadRule(1.0, 100, clock)
    assert rule.wait_started(size=50) == pytest.approx(1.5)
    clock.now += 1.4
    rule.wait_ended(50)  # in time: 50 bytes in 1.4 s
    without_rate = ReadRule(1.0, None, clock)
    assert without_rate.wait_started(size=50) is None  # only a socket timeout can tell


def test_the_end_of_the_body_is_never_refused() -> None:
    clock = Clock()
    rule = ReadRule(1.0, 100, clock)
    rule.wait_started()
    clock.now += 5.0
    rule.wait_ended(0)  # the body ended (late, but nothing more is expected)


@given(
    st.floats(0.5, 60.0),
    st.integers(1, 1 << 20),
    st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(1.0, 4.0)), min_size=1, max_size=60),
)
def test_a_client_that_pays_for_each_wait_is_never_refused(
    read_timeout: float, min_rate: int, waits: list[tuple[float, float]]
) -> None:
    """Property: a client whose every chunk brings at least `min_rate` bytes per second
    it was waited for (waits no longer than `read_timeout`) is never refused."""
    clock = Clock()
    rule = ReadRule(read_timeout, min_rate, clock)
    for share, overpay in waits:
        seconds = share * read_timeout
        allowed = rule.wait_started()
        assert allowed is not None and allowed >= seconds
        clock.now += seconds
        rule.wait_ended(max(1, int(seconds * min_rate * overpay) + 1))


@given(
    st.floats(0.5, 60.0),
    st.integers(10, 1 << 20),
    st.lists(st.tuples(st.floats(0.0, 2.0), st.integers(0, 1 << 22)), max_size=40),
)
def test_silence_after_any_history_is_cut_within_read_timeout(
    read_timeout: float, min_rate: int, history: list[tuple[float, int]]
) -> None:
    """Property: whatever came before, a wait that brings nothing is cut after at most
    `read_timeout` seconds, and `wait_ended` raises exactly when a wait outlasted what
    was allowed plus what its bytes earned."""
    clock = Clock()
    rule = ReadRule(read_timeout, min_rate, clock)
    for seconds, size in history:
        allowed = rule.wait_started()
        assert allowed is not None and 0 <= allowed <= read_timeout
        clock.now += seconds
        late = seconds > allowed + size / min_rate + 1e-9
        if late and size:
            with pytest.raises(UploadTimeout):
                rule.wait_ended(size)
            return
        rule.wait_ended(size)
    allowed = rule.wait_started()
    assert allowed is not None and allowed <= read_timeout


# -- with a real event loop ----------------------------------------------------------


async def test_the_timer_cuts_a_wait_at_the_rule() -> None:
    rule = ReadRule(0.05, None)
    timer = ReadTimer(rule)
    never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    with pytest.raises(UploadTimeout, match=r"read_timeout=0\.05"):
        await timer.read(never)
    assert never.cancelled()
    timer.stop()


async def test_the_timer_passes_what_came_in_time_and_cuts_a_later_wait() -> None:
    rule = ReadRule(0.2, 10, time.monotonic)
    timer = ReadTimer(rule)

    async def chunk(size: int) -> bytes:
        await asyncio.sleep(0.01)
        return b"x" * size

    for _ in range(30):  # longer than read_timeout in all: the timer moves along
        data = await timer.read(chunk(1))
        rule.wait_ended(len(data))
    never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    with pytest.raises(UploadTimeout, match=r"no upload data for 0\.2 s"):
        await timer.read(never)
    assert time.monotonic() - started <= 0.2 + 0.1
    timer.stop()


async def test_the_timer_keeps_a_cancellation_from_elsewhere() -> None:
    rule = ReadRule(0.05, None)
    timer = ReadTimer(rule)
    never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    reader = asyncio.create_task(timer.read(never))
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    timer.stop()


async def test_the_timer_keeps_a_timeout_of_the_reading_itself() -> None:
    timer = ReadTimer(ReadRule(5.0, None))

    async def failing() -> bytes:
        raise TimeoutError("the server's own")

    with pytest.raises(TimeoutError, match="the server's own"):
        await timer.read(failing())
    timer.stop()


async def test_a_timed_body_yields_what_came_and_records_its_end() -> None:
    """`timed_body`, every async helper's loop: empty pieces are not yielded, the bytes
    taken and the end reach the refusal's `BodyState`, and the timer is dropped."""
    pieces = iter([(b"ab", True), (b"", True), (b"cde", True), (b"f", False)])

    async def receive_chunk() -> tuple[bytes, bool]:
        return next(pieces)

    state = BodyState(6)
    body = timed_body(receive_chunk, 5.0, 1, state)
    assert [chunk async for chunk in body] == [b"ab", b"cde", b"f"]
    assert (state.left, state.ended) == (0, True)


async def test_a_timed_body_cuts_a_silent_client() -> None:
    async def receive_chunk() -> tuple[bytes, bool]:
        await asyncio.get_running_loop().create_future()  # never answers
        raise AssertionError("unreachable")

    with pytest.raises(ValueError, match="read_timeout"):
        timed_body(receive_chunk, -1.0, None)  # checked at the call, before a read
    body = timed_body(receive_chunk, 0.05, None)
    with pytest.raises(UploadTimeout, match=r"read_timeout=0\.05"):
        await anext(body)


# -- the declared length -------------------------------------------------------------


def test_a_declared_length_over_max_size_is_refused() -> None:
    refuse_declared_length(None, 10)
    refuse_declared_length(10, 10)
    with pytest.raises(UploadTooLarge) as caught:
        refuse_declared_length(11, 10)
    assert caught.value.status_code == 413
    assert "(max_size=10)" in caught.value.detail


async def test_an_upload_checks_its_arguments_before_the_declared_length() -> None:
    """`parse_upload`: a bad argument is a ValueError even for an oversized request; a
    declared length over max_size is refused before a byte of the body is read."""
    read: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        read.append(b"x")
        yield b"x"

    with pytest.raises(ValueError, match="max_parts"):
        parse_upload(
            body(),
            "multipart/form-data; boundary=b",
            99,
            max_size=10,
            max_part_size=10,
            max_parts=0,
        )
    with pytest.raises(UploadTooLarge, match=r"max_size=10"):
        parse_upload(
            body(),
            "multipart/form-data; boundary=b",
            11,
            max_size=10,
            max_part_size=10,
            max_parts=1,
        )
    stream = parse_upload(
        body(), "multipart/form-data; boundary=b", 10, max_size=10, max_part_size=10, max_parts=1
    )
    await stream.aclose()
    assert read == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("123", 123),
        (b"123", 123),
        (" 7 ", 7),
        ("0", 0),
        ("-1", None),
        ("1e3", None),
        ("", None),
        ("١٢", None),  # Arabic-Indic digits: not an HTTP number
        ("12, 12", None),
    ],
)
def test_content_length_is_read_strictly(value: str | bytes | None, expected: int | None) -> None:
    assert content_length(value) == expected
