"""`TopicLog` (the ring of frames), positions in a ``Last-Event-ID``, and `Idle`."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx.broadcast._idle import Idle
from streamfx.broadcast._log import TopicLog
from streamfx.broadcast._positions import (
    MALFORMED,
    MAX_POSITION_LENGTH,
    join_positions,
    split_positions,
)
from streamfx.broadcast._waiter import Waiter
from streamfx.broadcast.redis_streams import parse_id


@given(capacity=st.integers(1, 8), appended=st.integers(0, 30), data=st.data())
def test_the_log_returns_exactly_the_frames_it_still_holds(
    capacity: int, appended: int, data: st.DataObject
) -> None:
    log = TopicLog("t", capacity)
    for n in range(1, appended + 1):
        assert log.append(b"%d;" % n) == n
    assert log.head == appended
    assert log.first == max(1, appended + 1 - capacity)
    after = data.draw(st.integers(log.first - 1, log.head), label="after")
    upto = data.draw(st.integers(after, log.head), label="upto")
    expected = b"".join(b"%d;" % n for n in range(after + 1, upto + 1))
    assert log.join(after, upto) == expected
    if log.first > 1:
        with pytest.raises(IndexError):
            log.join(log.first - 2, log.head)


def test_a_named_log_finds_ids_and_its_base() -> None:
    log = TopicLog("t", 3, named=True)
    log.base_id = "5-0"
    for n, event_id in enumerate(["6-0", "6-1", "9-0", "12-0"], 1):
        log.append(b"f%d" % n, event_id)
    assert log.base_id == "6-0", "the dropped frame's id becomes the base"
    assert log.find((6, 0), parse_key) == 1
    assert log.find((12, 0), parse_key) == 4
    assert log.find((9, 0), parse_key) == 3
    assert log.find((7, 0), parse_key) is None
    assert log.find((5, 0), parse_key) is None, "older than the base"


def parse_key(text: str) -> tuple[int, int]:
    parsed = parse_id(text)
    assert parsed is not None
    return parsed


async def test_append_wakes_each_waiter_once() -> None:
    log = TopicLog("t", 4)
    waiters = [Waiter(asyncio.get_running_loop()).arm() for _ in range(3)]
    log.waiters.update(waiters)
    log.append(b"x")
    assert [w.result() for w in waiters] == [True, True, True]
    assert not log.waiters


@pytest.mark.parametrize(
    ("header", "count", "expected"),
    [
        (None, 1, None),
        ("", 2, None),
        ("a-1", 1, ["a-1"]),
        ("a-1,b", 1, ["a-1,b"]),
        ("a-1,b-2", 2, ["a-1", "b-2"]),
        ("a-1", 2, MALFORMED),
        ("a-1,,", 3, MALFORMED),
        ("x" * (MAX_POSITION_LENGTH + 1), 1, MALFORMED),
        ("x" * 100_000, 3, MALFORMED),
    ],
)
def test_positions_are_split_per_topic_and_bounded(
    header: str | None, count: int, expected: object
) -> None:
    assert split_positions(header, count) == expected


def test_positions_join_in_topic_order() -> None:
    assert join_positions(["1-0", "2-0"]) == "1-0,2-0"


@pytest.mark.parametrize("text", ["1-0", "0-0", "1700000000000-12"])
def test_redis_ids_parse(text: str) -> None:
    assert parse_id(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1-",
        "-1",
        "a-1",
        "1-0-0",
        "1" * 21 + "-0",
        f"{2**64}-0",
        "0-18446744073709551616",
        "\uff11-0",
        "\u0661-0",
    ],
)
def test_malformed_redis_ids_do_not_parse(text: str) -> None:
    assert parse_id(text) is None


async def test_idle_wakes_on_news_times_out_on_silence_and_cleans_up() -> None:
    log = TopicLog("t", 4)
    idle = Idle([log], 0.01)
    assert await idle.wait() is False, "silence: a heartbeat is due"
    idle.wrote()
    waiting = asyncio.ensure_future(idle.wait())
    await asyncio.sleep(0)
    log.append(b"x")
    assert await waiting is True
    waiting = asyncio.ensure_future(idle.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not log.waiters, "a cancelled wait leaves nothing registered"
    idle.close()
    assert not idle.queued, "closed: its deadline left the heap"


async def test_cancelling_one_waiting_subscriber_leaves_the_others_waiting() -> None:
    log = TopicLog("t", 4)
    idles = [Idle([log], None) for _ in range(3)]
    tasks = [asyncio.ensure_future(idle.wait()) for idle in idles]
    await asyncio.sleep(0)
    assert len(log.waiters) == 3
    tasks[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    assert not tasks[0].done() and not tasks[2].done(), "the others still wait"
    assert len(log.waiters) == 2
    log.append(b"x")
    assert await tasks[0] is True
    assert await tasks[2] is True
    again = asyncio.ensure_future(idles[1].wait())  # the cancelled one can wait again
    await asyncio.sleep(0)
    log.append(b"y")
    assert await again is True
    assert not log.waiters


async def test_a_wake_before_the_task_suspends_is_not_lost() -> None:
    log = TopicLog("t", 4)
    idle = Idle([log], None)
    waiter = idle.waiting()
    log.append(b"x")  # resolved before anyone awaits it
    try:
        assert await waiter is True
    finally:
        idle.waited()
    assert not log.waiters


async def test_a_heartbeat_and_a_wake_in_the_same_turn_resolve_once() -> None:
    log = TopicLog("t", 4)
    idle = Idle([log], 0.01)
    waiting = asyncio.ensure_future(idle.wait())
    await asyncio.sleep(0)
    log.append(b"x")
    idle.expired(idle.due)  # the heartbeat falls due in the same turn: ignored
    assert await waiting is True
    idle.close()
