"""`Broadcast`: publish once, deliver to every subscriber, resume after a reconnect.

A hub keeps, per topic, a shared log of encoded frames (see `TopicLog`); a subscriber
is a cursor into it. So a publish is encoded once per process however many follow
the topic, costs O(1) when nobody does, and never waits for a subscriber; each
subscriber writes everything it has not written yet in one chunk.

Promises beyond those of `Subscription` (the subscriber's body):

- `publish` returns the event's id. Ids increase per topic; the client sends the last
  one back as ``Last-Event-ID`` and gets what followed it. In process, each topic keeps
  its newest `history` events; with `RedisStreamsBackend`, the stream does.
- Bad input is refused at the call with `TypeError`/`ValueError` and nothing is
  published: a topic that is not a non-empty ``str`` of at most `MAX_TOPIC_LENGTH`
  characters, an item `sse()` could not encode, bytes, an event carrying its own id.
- `close` refuses new subscriptions (`subscribe` raises `BroadcastError`; `sse`
  answers with the farewell and ends), sends every subscriber its due frames and the
  farewell with a jittered ``retry:``, waits at most `grace` seconds for them to end,
  then stops the backend. A subscriber blocked in a write to a client that reads
  nothing ends when that write completes or the adapter's write timeout gives up on
  the client. `streamfx.request_shutdown()` (and so `drain_on_signals()`) makes every
  hub of the process refuse new subscriptions and end its subscribers the same way
  (a jittered ``retry:``, no farewell event); publishing goes on until the hub is
  closed (``async with`` exit), which stops the backend.
- A hub belongs to the event loop it is used from: the loop it was started on, else
  the loop its subscribers run on (a hub nobody follows belongs to none). A publish
  or a subscriber from another loop is refused with `RuntimeError` (a publish from
  another thread could not wake the subscribers; nothing is published). From another
  thread, hand the coroutine to the hub's loop: under WSGI, where `to_wsgi` runs the
  bodies on `streamfx.adapters.wsgi.background_loop()`, a sync view publishes with
  ``asyncio.run_coroutine_threadsafe(hub.publish(topic, item),
  background_loop()).result()`` (and starts a Redis hub the same way).
  `request_shutdown` is the thread-safe way to end subscribers from elsewhere.
- Metrics go to the process-wide hook, kind ``"broadcast"``: each subscriber is a
  stream (opened, closed, items and bytes written, items skipped); the hub's own
  figures (``published``, ``replayed``, ``resets``, ``overflows``) and its backend's
  health go to hooks that have ``broadcast_counted`` / ``broadcast_health``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Final, Literal

from streamfx._core.shutdown import on_shutdown, shutdown_requested
from streamfx._response.response import StreamResponse
from streamfx._sse.event import ServerSentEvent, _check_retry
from streamfx._sse.response import SSE_HEADERS
from streamfx.broadcast._backend import Backend
from streamfx.broadcast._frames import Serialize, encode_body
from streamfx.broadcast._local import LocalBackend
from streamfx.broadcast._log import TopicLog
from streamfx.broadcast._subscription import Subscription
from streamfx.broadcast.errors import BroadcastError
from streamfx.metrics import BroadcastFigure, get_metrics, guarded

__all__ = ["MAX_TOPIC_LENGTH", "Broadcast", "Overflow"]

Overflow = Literal["disconnect", "sliding", "latest"]
OVERFLOW_MODES: Final = ("disconnect", "sliding", "latest")
MAX_TOPIC_LENGTH: Final = 256


class Broadcast:
    """A hub: topics, their retained history, and the subscribers that follow them.

    `backend`: None keeps everything in this process (nothing to start); a
    `RedisStreamsBackend` shares topics between processes and machines (then
    ``async with hub:`` is required). `buffer`: how many events a subscriber may lag
    behind before `overflow` applies (``"disconnect"``, ``"sliding"`` or
    ``"latest"``). `history`: frames kept per topic in this process (at least
    `buffer`). `serialize`: turns each published item into a `ServerSentEvent` or a
    ``str``. `name`: the hub's label in metrics. `max_topics`: topics kept in process
    (see `LocalBackend`).

    ``async with hub:`` starts it and closes it (`close` with its defaults).
    """

    def __init__(
        self,
        *,
        backend: Backend | None = None,
        buffer: int = 64,
        overflow: Overflow = "disconnect",
        history: int = 1000,
        serialize: Serialize | None = None,
        name: str = "",
        max_topics: int = 10_000,
    ) -> None:
        _check_count("buffer", buffer)
        _check_count("history", history)
        _check_count("max_topics", max_topics)
        if buffer > history:
            raise ValueError(
                f"buffer ({buffer}) cannot exceed history ({history}): a subscriber may "
                "only lag as far as the log reaches back"
            )
        if overflow not in OVERFLOW_MODES:
            raise ValueError(f"overflow must be one of {OVERFLOW_MODES}, got {overflow!r}")
        if serialize is not None and not callable(serialize):
            raise TypeError(f"serialize must be callable or None, not {type(serialize).__name__}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        self.buffer: Final = buffer
        self.overflow: Final[Overflow] = overflow
        self.history: Final = history
        self.name: Final = name
        self._serialize = serialize
        self._backend: Backend = LocalBackend(max_topics) if backend is None else backend
        self._backend.bind(history, self._health_changed, lambda n: self._count("resets", n))
        self._started = False
        self._closing = False
        self._closed = False
        self._farewell: ServerSentEvent | None = None
        self._subscribers = 0
        self._drained: asyncio.Future[None] | None = None
        self._followed: dict[TopicLog, int] = {}  # each log followed here: by how many
        self._stop_listening: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # see `_check_loop`

    # -- state ---------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True while the backend takes publishes and feeds subscribers."""
        return not self._closed and self._backend.healthy

    @property
    def subscribers(self) -> int:
        """Subscriptions open in this process."""
        return self._subscribers

    @property
    def closing(self) -> bool:
        """True once `close` was called (or a shutdown requested)."""
        return self._closing or shutdown_requested()

    # -- life cycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Start the backend (idempotent). ``async with hub:`` calls it."""
        if self._closed:
            raise BroadcastError("this hub is closed; make a new one")
        if self._started:
            return
        self._loop = self._check_loop()
        await self._backend.start()
        self._started = True
        self._listen_for_shutdown()

    async def __aenter__(self) -> Broadcast:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, *, farewell: ServerSentEvent | None = None, grace: float = 5.0) -> None:
        """Refuse new subscriptions, say `farewell` to every subscriber (with a
        jittered ``retry:``), wait up to `grace` seconds for them to end, stop the
        backend. Idempotent; see the module docstring."""
        if farewell is not None:
            if not isinstance(farewell, ServerSentEvent):
                raise TypeError(
                    f"farewell must be a ServerSentEvent or None, not {type(farewell).__name__}"
                )
            if farewell.id is not None:
                raise ValueError("a farewell must not carry an id: it would break resuming")
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not grace >= 0:
            raise ValueError(f"grace must be a non-negative number of seconds, got {grace!r}")
        self._begin_close(farewell)
        if self._subscribers:
            if self._drained is None or self._drained.done():
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._drained}, timeout=grace)
        if not self._closed:
            self._closed = True
            if self._stop_listening is not None:
                self._stop_listening()
                self._stop_listening = None
            if self._started:
                await self._backend.stop()

    def _begin_close(self, farewell: ServerSentEvent | None) -> None:
        if self._closing:
            return
        self._closing = True
        self._farewell = farewell
        self._wake_everyone()

    def _listen_for_shutdown(self) -> None:
        if self._stop_listening is None and not self._closed:
            self._stop_listening = on_shutdown(lambda: self._begin_close(None))

    # -- publishing ----------------------------------------------------------------

    async def publish(self, topic: str, item: Any, *, event: str | None = None) -> str:
        """Publish `item` to `topic` (encoded once, as `sse()` would); return its id.

        Raises `TypeError`/`ValueError` for bad input (nothing published),
        `BroadcastError` when the hub is closed or the backend cannot take it, and
        `RuntimeError` when called from another loop than the hub's (see the module
        docstring).
        """
        _check_topic(topic)
        if self._closed:
            raise BroadcastError("this hub is closed")
        if self._loop is not None:
            self._check_loop()
        body = encode_body(item, event, self._serialize)
        event_id = await self._backend.publish(topic, body)
        self._count("published", 1)
        return event_id

    # -- subscribing ---------------------------------------------------------------

    def sse(
        self,
        topics: str | Iterable[str],
        *,
        last_event_id: str | None = None,
        heartbeat: float | None = 15.0,
        retry: int | None = None,
        name: str = "",
    ) -> StreamResponse:
        """A ``200 text/event-stream`` response that follows `topics` (one name or
        several) from `last_event_id` (pass the request's ``Last-Event-ID`` header).

        `heartbeat`: seconds of silence before a ``: ping`` (None: never). `retry`
        (ms) is sent first and is the base of the overflow and farewell hints.
        `name` labels the stream in metrics (default: the hub's name).
        """
        body = self._follow(topics, last_event_id, heartbeat, retry, name)
        return StreamResponse(200, list(SSE_HEADERS), body)

    def subscribe(
        self,
        topics: str | Iterable[str],
        *,
        last_event_id: str | None = None,
        heartbeat: float | None = 15.0,
        retry: int | None = None,
        name: str = "",
    ) -> AsyncIterator[bytes]:
        """The body of `sse` as an async iterator of encoded frames (``bytes``).

        Raises `BroadcastError` once the hub is closing. Close it (``aclose()``) to
        unsubscribe if you stop iterating early.
        """
        if self.closing:
            raise BroadcastError("this hub is closing; it takes no new subscriptions")
        return self._follow(topics, last_event_id, heartbeat, retry, name)

    def _follow(
        self,
        topics: str | Iterable[str],
        last_event_id: str | None,
        heartbeat: float | None,
        retry: int | None,
        name: str,
    ) -> AsyncIterator[bytes]:
        names = _topic_list(topics)
        if last_event_id is not None and not isinstance(last_event_id, str):
            raise TypeError(
                f"last_event_id must be a str or None, not {type(last_event_id).__name__}"
            )
        if heartbeat is not None:
            if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float):
                raise TypeError(f"heartbeat must be a number of seconds or None, not {heartbeat!r}")
            if not (heartbeat > 0 and math.isfinite(heartbeat)):
                raise ValueError(f"heartbeat must be a positive, finite number, got {heartbeat!r}")
        if retry is not None:
            _check_retry(retry)
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        return Subscription(self, names, last_event_id, heartbeat, retry, name)

    # -- what subscribers and the backend use -------------------------------------

    def _check_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, if the hub may be used from it: the hub's loop, or any
        while it has none. A frame appended from another thread would wake the
        subscribers' tasks with a callback their loop does not see until something
        else wakes it (a heartbeat later, or never)."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and loop is not self._loop:
            raise RuntimeError(
                "this Broadcast hub belongs to another event loop (the one it was started "
                "on or its subscribers run on); from another thread, hand the call to that "
                "loop: asyncio.run_coroutine_threadsafe(hub.publish(...), loop).result() "
                "(under WSGI, loop = streamfx.adapters.wsgi.background_loop())"
            )
        return loop

    def _joined(self) -> None:
        self._loop = self._check_loop()
        self._subscribers += 1
        self._listen_for_shutdown()

    def _left(self) -> None:
        self._subscribers -= 1
        if not self._subscribers and not self._started:
            self._loop = None  # followed by nobody: free to serve another loop
        if not self._subscribers and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _attached(self, log: TopicLog) -> None:
        """A subscriber follows `log` (kept per log, not per subscriber)."""
        self._followed[log] = self._followed.get(log, 0) + 1

    def _detached(self, log: TopicLog) -> None:
        left = self._followed[log] - 1
        if left:
            self._followed[log] = left
        else:
            del self._followed[log]

    def _wake_everyone(self) -> None:
        """Wake every waiting subscriber (closing, health changed): each waits on the
        logs it follows."""
        for log in self._followed:
            log.wake(True)

    def _health_changed(self, healthy: bool) -> None:
        guarded(get_metrics()).broadcast_health(self.name, healthy)
        self._wake_everyone()

    def _count(self, figure: BroadcastFigure, count: int) -> None:
        if count:
            guarded(get_metrics()).broadcast_counted(self.name, figure, count)


def _check_count(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1 (every log and lag is bounded), got {value}")


def _check_topic(topic: object) -> None:
    if not isinstance(topic, str):
        raise TypeError(f"a topic must be a str, not {type(topic).__name__}")
    if not 0 < len(topic) <= MAX_TOPIC_LENGTH:
        raise ValueError(f"a topic must have 1 to {MAX_TOPIC_LENGTH} characters, got {len(topic)}")


def _topic_list(topics: str | Iterable[str]) -> list[str]:
    names = [topics] if isinstance(topics, str) else list(topics)
    if not names:
        raise ValueError("subscribe to at least one topic")
    for topic in names:
        _check_topic(topic)
    if len(set(names)) != len(names):
        raise ValueError(f"each topic may be given once, got {names!r}")
    return names
