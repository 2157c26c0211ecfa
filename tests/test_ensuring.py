from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

import streamfx
from streamfx.adapters.asgi import send_response
from tests._client import open_raw, recv_until, wait_until
from tests._servers import serve
from tests._sources import Probe, counting, forever


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


async def test_runs_once_on_exhaustion() -> None:
    fin = Counter()
    assert [x async for x in streamfx.ensuring(counting(3, Probe()), fin)] == [0, 1, 2]
    assert fin.calls == 1


async def test_runs_once_on_error() -> None:
    fin = Counter()
    with pytest.raises(RuntimeError):
        async for _ in streamfx.ensuring(counting(9, Probe(), fail_at=2), fin):
            pass
    assert fin.calls == 1


async def test_runs_once_on_early_close_after_the_source_is_closed() -> None:
    probe = Probe()
    order: list[str] = []
    stream = streamfx.ensuring(
        forever(probe), lambda: order.append(f"fin after {probe.cleanups} cleanups")
    )
    await anext(stream)
    await stream.aclose()
    await stream.aclose()
    assert order == ["fin after 1 cleanups"]


async def test_runs_once_when_closed_before_the_first_item() -> None:
    fin = Counter()
    stream = streamfx.ensuring(counting(3, Probe()), fin)
    await stream.aclose()
    await stream.aclose()
    assert fin.calls == 1


async def test_runs_once_on_cancellation_and_async_finalizers_are_awaited() -> None:
    done = asyncio.Event()
    calls = 0

    async def finalizer() -> None:
        nonlocal calls
        await asyncio.sleep(0)
        calls += 1
        done.set()

    started = asyncio.Event()

    async def slow() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(10)
        yield 2

    async def consume() -> None:
        # cancelled while waiting for the next item, inside the stream
        async for _ in streamfx.ensuring(slow(), finalizer):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()
    assert calls == 1


async def test_runs_once_when_leaving_aclosing() -> None:
    fin = Counter()
    async with contextlib.aclosing(streamfx.ensuring(forever(Probe()), fin)) as stream:
        async for item in stream:
            if item == 2:
                break
    assert fin.calls == 1


async def test_nested_ensurings_run_inner_first() -> None:
    order: list[str] = []
    inner = streamfx.ensuring(counting(2, Probe()), lambda: order.append("inner"))
    outer = streamfx.ensuring(inner, lambda: order.append("outer"))
    assert [x async for x in outer] == [0, 1]
    assert order == ["inner", "outer"]


# -- a finalizer that raises (issue 15, item 7) ----------------------------------------


def failing() -> None:
    raise RuntimeError("the finalizer failed")


async def test_a_finalizer_error_after_the_last_item_is_the_stream_s_error() -> None:
    got: list[int] = []
    with pytest.raises(RuntimeError, match="the finalizer failed"):
        async for item in streamfx.ensuring(counting(3, Probe()), failing):
            got.append(item)
    assert got == [0, 1, 2]


async def test_behind_a_buffer_a_finalizer_error_reaches_whoever_closes_it_early() -> None:
    """The finalizer runs in the buffer's producer task; closing the buffer early
    used to leave its error in the channel, where nothing read it."""
    stream = streamfx.buffer(streamfx.ensuring(forever(Probe()), failing), 4)
    await anext(stream)
    with pytest.raises(RuntimeError, match="the finalizer failed"):
        await stream.aclose()


async def test_a_response_body_closed_early_logs_the_finalizer_error_with_kind_and_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client left: nobody is there to receive the error, so the body logs it, with
    the stream's kind and name, and closes quietly."""
    body = streamfx.sse(streamfx.ensuring(forever(Probe()), failing), name="prices").body
    iterator = aiter(body)
    await anext(iterator)  # the opening comment
    await anext(iterator)  # the first event
    await iterator.aclose()  # type: ignore[attr-defined]
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "sse" in message and "'prices'" in message and "finalizer" in message
    assert records[0].exc_info is not None
    assert "the finalizer failed" in str(records[0].exc_info[1])


async def test_when_source_and_finalizer_both_raise_the_finalizer_s_error_wins() -> None:
    with pytest.raises(RuntimeError, match="the finalizer failed") as caught:
        async for _ in streamfx.ensuring(counting(9, Probe(), fail_at=1), failing):
            pass
    assert isinstance(caught.value.__context__, RuntimeError)
    assert "source failed at 1" in str(caught.value.__context__)


async def test_an_early_close_raises_the_finalizer_error_from_aclose() -> None:
    stream = streamfx.ensuring(forever(Probe()), failing)
    await anext(stream)
    with pytest.raises(RuntimeError, match="the finalizer failed"):
        await stream.aclose()


async def test_behind_a_merge_a_finalizer_error_reaches_whoever_closes_it_early() -> None:
    stream = streamfx.merge(forever(Probe()), streamfx.ensuring(forever(Probe()), failing))
    await anext(stream)
    with pytest.raises(RuntimeError, match="the finalizer failed"):
        await stream.aclose()


async def test_an_encoding_error_stays_the_body_s_error_and_the_finalizer_s_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def rows() -> AsyncIterator[object]:
        yield {"n": 1}
        yield {"n": object()}  # not serializable
        await asyncio.Event().wait()  # never ends by itself

    body = streamfx.export(streamfx.ensuring(rows(), failing), "ndjson", name="rows").body
    with pytest.raises(TypeError):
        async for _ in body:
            pass
    records = [r for r in caplog.records if r.name == "streamfx.response"]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert "export" in records[0].getMessage() and "'rows'" in records[0].getMessage()


async def test_a_client_that_disconnects_from_uvicorn_gets_the_finalizer_error_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through a real server: the client closes its socket after the first event; the
    finalizer raises as the body is closed; one ERROR record names the stream, and the
    server logs no error of its own."""
    finalized = asyncio.Event()

    def failing_once_called() -> None:
        finalized.set()
        failing()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        source = streamfx.ensuring(forever(Probe()), failing_once_called)
        response = streamfx.sse(source, name="prices", heartbeat=None)
        await send_response(response, scope, receive, send)

    async with serve(app) as (_, port):
        sock = await open_raw(port, "/")
        with sock:
            await recv_until(sock, b"data: 0")
        await asyncio.wait_for(finalized.wait(), 10)
        await wait_until(
            lambda: any(r.name == "streamfx.response" for r in caplog.records),
            "the finalizer error to be logged",
        )
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["streamfx.response"], [r.getMessage() for r in errors]
    assert "sse" in errors[0].getMessage() and "'prices'" in errors[0].getMessage()
    assert errors[0].exc_info is not None


async def test_a_body_whose_closer_is_cancelled_still_logs_the_finalizer_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The task closing the body is cancelled while it waits for the source's cleanup:
    the cancellation propagates (never swallowed) and the finalizer's error is logged."""
    cleaning, release = asyncio.Event(), asyncio.Event()

    async def slow_failing() -> None:
        cleaning.set()
        await release.wait()  # the cleanup takes a while: the closer waits for it
        raise RuntimeError("the finalizer failed")

    body = aiter(streamfx.sse(streamfx.ensuring(forever(Probe()), slow_failing), name="p").body)
    await anext(body)  # the opening comment
    await anext(body)  # the first event
    closing = asyncio.create_task(body.aclose())  # type: ignore[attr-defined]
    await cleaning.wait()
    closing.cancel()
    await asyncio.sleep(0)  # the closer takes the cancellation and keeps waiting
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await closing
    records = [r for r in caplog.records if r.name == "streamfx.response"]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert "'p'" in records[0].getMessage() and records[0].exc_info is not None


async def test_behind_a_merge_a_second_finalizer_error_is_logged_not_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def failing_too() -> None:
        raise RuntimeError("the second finalizer failed")

    stream = streamfx.merge(
        streamfx.ensuring(forever(Probe()), failing),
        streamfx.ensuring(forever(Probe()), failing_too),
    )
    await anext(stream)
    with pytest.raises(RuntimeError, match="finalizer failed") as raised:
        await stream.aclose()
    logged = [r for r in caplog.records if r.name == "streamfx.channel"]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert logged[0].exc_info is not None
    errors = {str(raised.value), str(logged[0].exc_info[1])}
    assert errors == {"the finalizer failed", "the second finalizer failed"}
