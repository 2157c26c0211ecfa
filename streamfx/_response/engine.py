"""`encode_batches`: the shared engine under every response body.

A source runs in its own task into a bounded `Channel` (the `buffer` machinery); the
body takes *every item that is ready* at once, encodes them with one call, and yields
one chunk. So a producer that is ahead of the client sends many items per write, and a
lone item leaves at once, without waiting for company.

Promises:

- Memory: at most ``policy.capacity`` items wait. With ``"suspend"`` the batch being
  encoded and written counts too, until its chunk has been handed on (yielded and the
  body resumed): a slow client slows the producer and at most ``capacity`` items are
  held in all. With a lossy strategy the batch in flight is never dropped from; while
  its chunk is written, up to ``capacity`` newer items wait.
- Drops (``"sliding"``, ``"dropping"``) happen only while the client is not ready, that
  is, while the body is suspended in a ``yield`` (the adapter is writing). While the
  body waits for items, a full buffer makes the source wait: a burst into a client that
  keeps up loses nothing. Each dropped item is passed to ``on_drop(item)`` as it is
  dropped, and counted once in ``items_dropped(kind, name, n)``, reported for the
  drops since the last report when the body takes its next batch or ends (a stalled
  client, whose body is away in a write, costs no report per item). With the
  policy's `stall_after` (0.25 s by default) a lossy buffer whose body has been away
  that long (since it last took a batch), the buffer full, stops pulling the source
  until the body comes back (see `BufferPolicy`): the items held are kept and sent in
  order, nothing more is dropped, and the source is not woken per item meanwhile.
- Keep-alive: with `keepalive` set, `beat` is yielded whenever that many seconds pass
  without a chunk, counted from when the body came back for more (the rule of
  `streamfx.heartbeat`). The silence is a lazy deadline in the loop's shared
  `Deadlines` (`_Silence`): an idle stream holds no timer of its own.
- Order is kept; the source's error is raised after the chunks of the items before it.
- Metrics: ``stream_opened`` at the first iteration, ``items_sent`` per chunk (items
  and bytes), ``items_dropped`` as above, ``stream_closed`` exactly once with the
  duration and outcome.
- With `last_word`, an error of the source (never one of `encode`: that one is always
  raised) is first offered to ``last_word(exc, items_sent)``: the bytes it returns are
  the body's last chunk and the body ends cleanly (the outcome is still ``"error"``);
  None raises the error as without it. `items_sent` tells whether any item came from
  the source before it failed.
- Closing the body cancels the source's task and waits for its cleanup. An error that
  cleanup raises (a finalizer failing when the client disconnects) is logged at ERROR
  on ``streamfx.response`` with the stream's kind and name and its traceback, and the
  body closes quietly: the body's own error, if it has one, is what propagates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from functools import lru_cache
from typing import Any, TypeVar

from streamfx._core.channel import Channel
from streamfx._core.deadlines import Deadline, deadlines_for
from streamfx._core.policy import BufferPolicy
from streamfx._core.shutdown import off_shutdown, on_shutdown, shutdown_requested
from streamfx.metrics import MetricsHook, Outcome, get_metrics, guarded, reports_items

T = TypeVar("T")
LastWord = Callable[[Exception, bool], bytes | None]
"""``last_word(exc, items_sent)``: the last chunk for a source that failed, or None."""

logger = logging.getLogger("streamfx.response")


def encode_batches(
    source: AsyncIterable[T],
    policy: BufferPolicy,
    encode: Callable[[list[T]], bytes],
    *,
    kind: str,
    name: str = "",
    prefix: bytes = b"",
    finish: Callable[[], bytes] | None = None,
    keepalive: float | None = None,
    beat: bytes = b"",
    on_drop: Callable[[T], object] | None = None,
    metrics: MetricsHook | None = None,
    drainable: bool = False,
    farewell: bytes = b"",
    last_word: LastWord | None = None,
) -> AsyncGenerator[bytes, None]:
    """Encode `source` in batches of ready items; see the module docstring.

    `prefix` is yielded first, before any item is awaited (an SSE stream uses it to get
    its headers out at once). `finish()` is called when the source is exhausted and
    its bytes, if any, are the last chunk.

    A `drainable` stream ends on purpose when a shutdown is requested
    (`streamfx.request_shutdown`): it sends the items it already holds, then
    `farewell` (if not empty), and ends cleanly (outcome ``"completed"``) without
    waiting for the source, whose task is cancelled as on any close. A stream that is
    not drainable (a file: ending it early would truncate it) ignores the request.
    """
    hook = guarded(metrics if metrics is not None else get_metrics())
    channel: Channel[T] = Channel(
        policy.capacity, policy.strategy, on_drop, stall_after=policy.stall_after
    )
    return _run(
        channel,
        source,
        encode,
        kind,
        name,
        prefix,
        finish,
        keepalive,
        beat,
        hook,
        drainable,
        farewell,
        last_word,
    )


async def _run(
    channel: Channel[T],
    source: AsyncIterable[T],
    encode: Callable[[list[T]], bytes],
    kind: str,
    name: str,
    prefix: bytes,
    finish: Callable[[], bytes] | None,
    keepalive: float | None,
    beat: bytes,
    hook: MetricsHook,
    drainable: bool,
    farewell: bytes,
    last_word: LastWord | None,
) -> AsyncGenerator[bytes, None]:
    hook.stream_opened(kind, name)
    started = time.monotonic()
    outcome: Outcome = "closed"
    channel.start((source,), _task_name(kind))
    silence = None if keepalive is None else _Silence(channel, keepalive)
    # The shutdown listener: the silence itself when there is one (calling it wakes the
    # body), not a bound method of the channel held per stream in the listeners.
    waker = None if not drainable else channel.wake if silence is None else silence
    if waker is not None:
        on_shutdown(waker)
    reported_drops = 0
    items_sent = False
    # Per chunk, the one metrics call; skipped when nobody listens (the null hook).
    report_sent = hook.items_sent if reports_items(hook) else None
    try:
        if prefix:
            yield prefix
        while True:
            batch = channel.take_all()
            if channel.dropped != reported_drops:
                hook.items_dropped(kind, name, channel.dropped - reported_drops)
                reported_drops = channel.dropped
            if batch:
                items_sent = True
                if silence is not None:
                    silence.counting = False
                chunk = encode(batch)
                if report_sent is not None:
                    report_sent(kind, name, len(batch), len(chunk))
                if chunk:
                    yield chunk
                del chunk  # written: not held while the stream waits for more
                channel.release()
                continue
            if channel.done:
                break
            if drainable and shutdown_requested():
                break  # drained: what was held has been sent
            del batch  # an empty list: not held while the stream waits (idle memory)
            if silence is None:
                await channel.wait_ready()
            else:
                silence.start()
                await channel.wait_ready()
                if silence.elapsed:
                    silence.counting = False
                    yield beat
        if last_word is None:
            channel.raise_if_failed()
        else:
            last = None
            try:
                channel.raise_if_failed()
            except Exception as exc:
                last = last_word(exc, items_sent)
                if last is None:
                    raise
            if last is not None:  # yielded outside the handler: no traceback held
                outcome = "error"
                yield last
                return
        if not channel.done:  # ended by a shutdown request
            if farewell:
                hook.items_sent(kind, name, 0, len(farewell))
                yield farewell
        elif finish is not None:
            tail = finish()
            if tail:
                hook.items_sent(kind, name, 0, len(tail))
                yield tail
        outcome = "completed"
    except (Exception, asyncio.CancelledError) as exc:
        outcome = "closed" if isinstance(exc, asyncio.CancelledError) else "error"
        raise
    finally:
        if silence is not None:
            silence.stop()
        if waker is not None:
            off_shutdown(waker)
        try:
            await channel.aclose()
        except Exception as exc:
            # The body ended before its source (the client left, an encoding error, a
            # shutdown) and the source's cleanup raised as it was cancelled: nobody
            # reads a body's close, so the error is logged, not raised.
            _log_cleanup_error(kind, name, exc)
        except asyncio.CancelledError:
            if channel.cleanup_error is not None:  # cancelled while waiting for it
                _log_cleanup_error(kind, name, channel.cleanup_error)
            raise
        finally:
            if channel.dropped != reported_drops:
                hook.items_dropped(kind, name, channel.dropped - reported_drops)
            hook.stream_closed(kind, name, time.monotonic() - started, outcome)


class _Silence(Deadline):
    """When a body's silence calls for a keep-alive, as a lazy deadline in the loop's
    shared `Deadlines` (no timer per stream, none per wait).

    The silence starts when the body comes back for more after its last chunk
    (`start`; ``counting = False`` when a chunk leaves); once `interval` seconds have
    passed since, `elapsed` is set and the body's wait is woken (`Channel.wake`).
    Calling it wakes the body too, without a keep-alive: it is a drainable body's
    listener for a shutdown request (`on_shutdown`)."""

    __slots__ = ("channel", "counting", "deadlines", "due", "elapsed", "interval", "loop")

    def __init__(self, channel: Channel[Any], interval: float) -> None:
        super().__init__()
        self.channel = channel
        self.interval = interval
        self.loop = loop = asyncio.get_running_loop()
        self.deadlines = deadlines_for(loop)
        self.counting = False
        self.elapsed = False
        self.due = 0.0

    def start(self) -> None:
        """The body waits: the silence counts from now unless it already does."""
        if self.counting:
            return
        self.counting = True
        self.elapsed = False
        self.due = due = self.loop.time() + self.interval
        self.deadlines.schedule(self, due)  # already waiting (earlier): re-checked there

    def stop(self) -> None:
        self.counting = False
        self.deadlines.cancel(self)

    def __call__(self) -> None:
        self.channel.wake()

    def expired(self, now: float) -> None:
        if not self.counting:
            return  # a chunk left since: the next `start` schedules it again
        if now < self.due:
            self.deadlines.schedule(self, self.due)
            return
        self.elapsed = True
        self.channel.wake()


def _log_cleanup_error(kind: str, name: str, error: BaseException) -> None:
    logger.error(
        "the %s stream %r ended early and a finalizer of its source raised: logged, not raised",
        kind,
        name,
        exc_info=error,
    )


@lru_cache(maxsize=64)
def _task_name(kind: str) -> str:
    """The name of a stream's producer task, one string shared by every stream of a
    kind (a name built per stream is held by its task: thousands of idle streams)."""
    return f"streamfx.{kind}"
