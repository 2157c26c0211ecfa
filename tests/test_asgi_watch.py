"""`streamfx.adapters._asgi_watch`: noticing a client that left while the body is idle.

Under uvicorn (httptools and h11) and hypercorn, an idle stream has no task of its own
watching ``receive``, and a client that leaves still ends its body at once. Elsewhere
(any other ``receive``) the watch is a task, as before. The stepping rules (a bare
yield, messages that are not a disconnect, a broken receive, `stop`) are checked on
the watch directly.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from streamfx import sse
from streamfx.adapters import _asgi_watch
from streamfx.adapters._asgi_watch import DisconnectWatch
from streamfx.adapters.asgi import to_asgi
from streamfx.broadcast import Broadcast
from tests._client import open_raw, recv_until, wait_until
from tests._servers import serve

WATCH_TASK = "streamfx.asgi disconnect watch"
SERVERS = [
    pytest.param("uvicorn", {"http": "httptools"}, id="uvicorn-httptools"),
    pytest.param("uvicorn", {"http": "h11"}, id="uvicorn-h11"),
    pytest.param("hypercorn", {}, id="hypercorn"),
]


def watch_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == WATCH_TASK]


@pytest.mark.parametrize(("server", "options"), SERVERS)
async def test_idle_streams_have_no_watch_task_and_still_see_the_client_leave(
    server: Any, options: dict[str, Any]
) -> None:
    """Before: one watch task per connection (a Task, its coroutine, its entry in the
    loop's task set). Now none, and leaving still closes each body at once."""
    closed = 0
    hub = Broadcast()

    async def never() -> AsyncIterator[str]:
        nonlocal closed
        try:
            await asyncio.get_running_loop().create_future()
            yield "unreachable"  # pragma: no cover - never reached
        finally:
            closed += 1

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/hub":
            await to_asgi(hub.sse("topic", heartbeat=None))(scope, receive, send)
        else:
            await to_asgi(sse(never(), heartbeat=None))(scope, receive, send)

    async with serve(app, server, **options) as (_, port):
        socks = [await open_raw(port, path) for path in ("/sse", "/hub") * 5]
        try:
            for sock in socks:
                await recv_until(sock, b"\r\n\r\n")
            await wait_until(lambda: hub.subscribers == 5, "every subscriber")
            assert watch_tasks() == []
        finally:
            for sock in socks:
                sock.close()
        await wait_until(lambda: closed == 5 and hub.subscribers == 0, "every body closed")
    await hub.close()


async def test_a_receive_of_another_kind_is_watched_by_a_task() -> None:
    """A ``receive`` that may need a task of its own (a middleware's, a test client's)
    gets one, and its disconnect cancels the sending task."""
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    sending = asyncio.create_task(asyncio.sleep(30))
    watch = DisconnectWatch(sending, {}, receive, nothing_sent)
    watch.start()
    assert len(watch_tasks()) == 1
    gone.set()
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert watch.disconnected
    await watch.stop()
    assert watch_tasks() == []


async def nothing_sent(message: Any) -> None:  # pragma: no cover - never called
    raise AssertionError(message)


async def test_messages_before_the_disconnect_are_taken_in_one_go_without_a_task() -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sending = asyncio.create_task(asyncio.sleep(30))
    watch = DisconnectWatch(sending, {}, queue.get, nothing_sent)
    watch.start()
    assert watch_tasks() == []
    for _ in range(3):
        queue.put_nowait({"type": "http.request", "body": b"x", "more_body": True})
    queue.put_nowait({"type": "http.disconnect"})
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert watch.disconnected and queue.empty()
    await watch.stop()


async def test_a_disconnect_while_closing_cancels_nothing() -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sending = asyncio.create_task(asyncio.sleep(0.01))
    watch = DisconnectWatch(sending, {}, queue.get, nothing_sent)
    watch.start()
    watch.closing = True
    queue.put_nowait({"type": "http.disconnect"})
    await sending  # not cancelled
    assert not watch.disconnected
    await watch.stop()


class SteppedReceive:
    """A ``receive`` driven by hand (as if it were a server's), that waits on bare
    yields and futures, and notes its clean-up."""

    def __init__(self) -> None:
        self.future: asyncio.Future[None] | None = None
        self.cleaned = 0
        self.calls = 0

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        try:
            await bare_yield()
            self.future = asyncio.get_running_loop().create_future()
            await self.future
            return {"type": "http.disconnect"}
        finally:
            self.cleaned += 1


@types.coroutine
def bare_yield() -> Generator[None, None, None]:
    yield


@pytest.fixture
def by_hand(monkeypatch: pytest.MonkeyPatch) -> SteppedReceive:
    stepped = SteppedReceive()
    monkeypatch.setattr(_asgi_watch, "_steps_by_hand", lambda receive: True)
    return stepped


async def test_a_bare_yield_is_stepped_again_on_the_next_turn(by_hand: SteppedReceive) -> None:
    sending = asyncio.create_task(asyncio.sleep(30))
    watch = DisconnectWatch(sending, {}, by_hand.receive, nothing_sent)
    watch.start()
    await wait_until(lambda: by_hand.future is not None, "the receive to wait on its future")
    assert watch_tasks() == []
    assert by_hand.future is not None
    by_hand.future.set_result(None)
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert by_hand.calls == by_hand.cleaned == 1


async def test_stop_cancels_the_pending_receive_and_leaves_no_callback(
    by_hand: SteppedReceive,
) -> None:
    sending = asyncio.create_task(asyncio.sleep(30))
    watch = DisconnectWatch(sending, {}, by_hand.receive, nothing_sent)
    watch.start()
    await wait_until(lambda: by_hand.future is not None, "the receive to wait on its future")
    future = by_hand.future
    assert future is not None
    await watch.stop()
    assert by_hand.cleaned == 1, "the receive's clean-up ran"
    future.set_result(None)  # nothing is woken: the callback was removed
    await asyncio.sleep(0)
    assert by_hand.calls == 1 and not watch.disconnected
    sending.cancel()


async def test_stop_during_a_bare_yield_leaves_nothing_running(by_hand: SteppedReceive) -> None:
    sending = asyncio.create_task(asyncio.sleep(30))
    watch = DisconnectWatch(sending, {}, by_hand.receive, nothing_sent)
    watch.start()  # the receive is at its bare yield, its next step queued
    await watch.stop()
    assert by_hand.cleaned == 1
    await asyncio.sleep(0)  # the queued step finds the watch stopped
    assert by_hand.future is None and by_hand.calls == 1
    sending.cancel()


@pytest.mark.parametrize("failure", ["raises", "not a message", "bad yield", "not awaitable"])
async def test_a_broken_receive_ends_the_watch_not_the_response(
    failure: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_asgi_watch, "_steps_by_hand", lambda receive: True)

    @types.coroutine
    def bad_yield() -> Generator[Any, None, None]:
        yield "not a future"

    async def receive() -> Any:
        if failure == "raises":
            raise RuntimeError("broken")
        if failure == "bad yield":
            await bad_yield()
        return "not a message"

    def not_awaitable() -> Any:
        return {"type": "http.disconnect"}

    sending = asyncio.create_task(asyncio.sleep(0.01))
    chosen = not_awaitable if failure == "not awaitable" else receive
    watch = DisconnectWatch(sending, {}, chosen, nothing_sent)
    with caplog.at_level(logging.DEBUG, logger="streamfx.adapters.asgi"):
        watch.start()
    await sending  # not cancelled
    assert not watch.disconnected
    assert any("ASGI receive" in record.getMessage() for record in caplog.records)
    await watch.stop()


def _waiting_context(queue: asyncio.Queue[dict[str, Any]]) -> object:
    """The context the watch's callback on `queue`'s pending ``get`` will run in."""
    (getter,) = queue._getters  # type: ignore[attr-defined]
    callbacks = getter._callbacks
    assert callbacks is not None and len(callbacks) == 1
    callback, context = callbacks[0]
    assert isinstance(callback, DisconnectWatch)
    return context


async def test_a_watch_stepped_by_hand_copies_no_context_per_wait() -> None:
    """Issue 15, idle memory: each wait of a watch stepped by hand registered its
    callback with a copy of the current context (one object per idle stream). The
    watches of one thread now share one context, another thread's loop has its own,
    and a disconnect is still seen at once."""
    queues: list[asyncio.Queue[dict[str, Any]]] = [asyncio.Queue() for _ in range(2)]
    sending = [asyncio.create_task(asyncio.sleep(30)) for _ in queues]
    watches = [
        DisconnectWatch(task, {}, queue.get, nothing_sent)
        for task, queue in zip(sending, queues, strict=True)
    ]
    for watch in watches:
        watch.start()
    first, second = (_waiting_context(queue) for queue in queues)
    assert first is second

    async def in_another_thread() -> object:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        task = asyncio.create_task(asyncio.sleep(30))
        watch = DisconnectWatch(task, {}, queue.get, nothing_sent)
        watch.start()
        context = _waiting_context(queue)
        await watch.stop()
        task.cancel()
        return context

    other = await asyncio.to_thread(asyncio.run, in_another_thread())
    assert other is not first
    queues[0].put_nowait({"type": "http.disconnect"})
    with pytest.raises(asyncio.CancelledError):
        await sending[0]
    assert watches[0].disconnected and not watches[1].disconnected
    for watch in watches:
        await watch.stop()
    sending[1].cancel()
