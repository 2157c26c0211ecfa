"""`sse()`: a stream of items as a ``text/event-stream`` `StreamResponse`.

The body runs on `encode_batches` (kind ``"sse"``): the source runs in its own task into
a bounded buffer, and every event that is ready when the client can take more leaves in
one body chunk. So a producer that is ahead of the client sends many events per write,
and a lone event leaves at once, without waiting for company.

Promises:

- The body's first chunk is produced at once, before the source is awaited: ``retry: N``
  and a blank line when `retry` is given, otherwise an empty comment line (``:`` and a
  blank line). A client ignores both as events; they let an adapter send the status and
  headers immediately, so ``EventSource`` reports the connection open even when the
  first event is minutes away.
- During silence, a comment ``: ping`` (plus the blank line) is sent every `heartbeat`
  seconds, which keeps proxies and load balancers from closing an idle connection.
- Buffer: sliding, 64 by default. When the client is slower than the source, the
  *oldest* waiting events are dropped (a live feed wants the newest); the drops are
  reported to the metrics hook as ``items_dropped("sse", name, n)``, n being those
  since the last report, when the stream next takes its events. A client that stops
  reading (its write blocked) pauses the stream once its buffer has been full for
  ``stall_after`` seconds (0.25 by default) without the client taking anything: the
  source is not pulled any more, so a stalled client costs nothing per event its
  source would produce, until it reads again (the source resumes at once: the 64
  held events are sent in order, then the one pulled as it paused, then what the
  source yields next) or the adapter's write timeout ends the stream and closes the
  source. The pause drops nothing.
  ``BufferPolicy(64, "sliding", stall_after=None)`` keeps pulling and dropping instead;
  ``buffer=BufferPolicy(n, "suspend")`` slows the source down whenever the client is
  slower.
- Order is kept. An error from the source is raised from the body after the events
  before it, so the adapter aborts the connection. An item that cannot be encoded (not
  JSON-serializable, a bad `serialize` result, a lone surrogate) raises from the
  body too; the events batched in the same chunk before it are not sent.
- With `on_error`, an error from the source (not an encoding error) becomes a last
  event instead: the events before it, then ``on_error(exc)`` in a chunk of its own,
  then a clean end (the metrics still record the stream's outcome as ``"error"``). A
  handler that raises or returns something other than a `ServerSentEvent` is logged
  (logger ``streamfx.sse``) and the stream is cut as without it.
- A `CircuitOpenError` from the source before its first item (`circuit` refusing the
  stream at its start) ends the stream cleanly after ``retry: N``, N being the
  breaker's `retry_after` in milliseconds (rounded up; at least `MIN_CIRCUIT_RETRY_MS`,
  so that a half-open breaker whose trial is running, `retry_after` 0, does not make
  every client reconnect in a tight loop): an ``EventSource`` comes back when the
  breaker admits streams again, where an error status would make it give up for good
  (the metrics record the outcome ``"error"``). Later, it is an error like any other.
- Closing the body cancels the source's task and waits for its cleanup.
- A server shutdown (`streamfx.request_shutdown`) ends the stream on purpose: the events
  already held are sent, then the optional `farewell` event, then a clean end.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterable, Callable
from typing import Any, Final, TypeVar

from streamfx._core.circuit import CircuitOpenError
from streamfx._core.policy import BufferPolicy
from streamfx._response.engine import encode_batches
from streamfx._response.response import StreamResponse
from streamfx._sse.encoder import Serialized, SseEncoder
from streamfx._sse.event import ServerSentEvent, _check_retry

__all__ = ["MIN_CIRCUIT_RETRY_MS", "sse"]

T = TypeVar("T")
OnError = Callable[[Exception], ServerSentEvent]

logger = logging.getLogger("streamfx.sse")

SSE_HEADERS: Final[tuple[tuple[str, str], ...]] = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
)
DEFAULT_BUFFER: Final = BufferPolicy(64, "sliding")
OPENING: Final = b":\n\n"
HEARTBEAT: Final = b": ping\n\n"
MIN_CIRCUIT_RETRY_MS: Final = 1000


def sse(
    events: AsyncIterable[T],
    *,
    heartbeat: float | None = 15.0,
    buffer: BufferPolicy | None = None,
    serialize: Callable[[T], Serialized] | None = None,
    retry: int | None = None,
    name: str = "",
    farewell: ServerSentEvent | None = None,
    on_error: OnError | None = None,
) -> StreamResponse:
    """A ``200 text/event-stream`` response whose body sends `events`.

    Each item becomes one event:

    - a `ServerSentEvent` is sent as it encodes;
    - a ``str`` is the event's data (line breaks in it become several ``data:`` lines);
    - ``bytes`` (``bytearray``, ``memoryview``) are taken as already encoded and passed
      through untouched (they must be whole events, ending with a blank line);
    - anything else is sent as its compact JSON as the data, by the rules `export()`
      uses too (orjson when installed, else the standard ``json`` module, with the same
      result): JSON natives (ints of any size; int, float, bool or None dict keys as
      strings), datetimes (ISO 8601), UUIDs, enums, dataclasses, Pydantic models.
      NaN and infinities are sent as ``null`` (as ``JSON.stringify`` writes them);
      any other type raises `TypeError` from the body.
      U+2028, U+2029 and U+0085 are escaped, so the JSON stays on one ``data:`` line
      even for clients that split lines like `str.splitlines`.

    With `serialize`, *every* item goes through it first, and it must return a
    `ServerSentEvent`, a ``str`` or ``bytes`` (used as above).

    `heartbeat` is the silence, in seconds, after which a ``: ping`` comment is sent
    (None: never). `retry` (milliseconds) is sent first so clients use it to reconnect.
    `buffer` overrides the default ``BufferPolicy(64, "sliding")``, which pauses the
    source after 0.25 s of a client that reads nothing (see the module docstring). `name`
    labels the stream in
    metrics. When the server shuts down (`streamfx.request_shutdown`), the stream sends
    the events it holds, then `farewell` if given, and ends cleanly.

    `on_error(exc)`: when the source raises, the `ServerSentEvent` it returns is sent
    last and the stream ends cleanly (without it the connection is cut). A source
    refused by an open circuit at its start ends cleanly after ``retry:`` set to the
    breaker's `retry_after`. See the module docstring for both.

    Raises `ValueError` (or `TypeError` for a wrong type) at once for a heartbeat that
    is not a positive number, a bad `retry`, a `buffer` that is not a `BufferPolicy`,
    `events` that is not an async iterable or an `on_error` that is not callable.
    """
    if not hasattr(events, "__aiter__"):
        raise TypeError(
            f"sse() needs an async iterable of events, not {type(events).__name__} "
            "(wrap a list or a sync generator in an async generator)"
        )
    if heartbeat is not None:
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float):
            raise TypeError(f"heartbeat must be a number of seconds or None, not {heartbeat!r}")
        if not (heartbeat > 0 and math.isfinite(heartbeat)):
            raise ValueError(f"heartbeat must be a positive, finite number, got {heartbeat!r}")
    if buffer is None:
        buffer = DEFAULT_BUFFER
    elif not isinstance(buffer, BufferPolicy):
        raise TypeError(f"buffer must be a BufferPolicy or None, not {type(buffer).__name__}")
    if on_error is not None and not callable(on_error):
        raise TypeError(f"on_error must be callable or None, not {type(on_error).__name__}")
    prefix = OPENING if retry is None else f"retry: {_check_retry(retry)}\n\n".encode()
    encode = _default_encoder() if serialize is None else SseEncoder(serialize).encode
    body = encode_batches(
        events,
        buffer,
        encode,
        kind="sse",
        name=name,
        prefix=prefix,
        keepalive=heartbeat,
        beat=HEARTBEAT,
        drainable=True,
        farewell=b"" if farewell is None else farewell.encode(),
        last_word=_last_word if on_error is None else functools.partial(_last_word_with, on_error),
    )
    return StreamResponse(200, list(SSE_HEADERS), body)


def _last_word(exc: Exception, items_sent: bool) -> bytes | None:
    """The engine's `last_word` without `on_error` (one function shared by every such
    stream): an open circuit before the first item ends the stream after ``retry:``;
    any other error of the source is raised. (An error encoding an item never gets
    here: the engine always raises it.)"""
    if isinstance(exc, CircuitOpenError) and not items_sent:
        retry = max(math.ceil(exc.retry_after * 1000), MIN_CIRCUIT_RETRY_MS)
        return f"retry: {retry}\n\n".encode()
    return None


def _last_word_with(on_error: OnError, exc: Exception, items_sent: bool) -> bytes | None:
    """The engine's `last_word` with `on_error`: as `_last_word` for an open circuit,
    else `on_error`'s event."""
    if isinstance(exc, CircuitOpenError):
        return _last_word(exc, items_sent)
    return _final_event(on_error, exc)


def _final_event(on_error: OnError, exc: Exception) -> bytes | None:
    """``on_error(exc)`` encoded; None (and a log record) when the handler fails."""
    try:
        event = on_error(exc)
        if not isinstance(event, ServerSentEvent):
            raise TypeError(f"on_error must return a ServerSentEvent, not {type(event).__name__}")
    except Exception:
        logger.exception("sse(on_error=%r) failed on %r; cutting the stream", on_error, exc)
        return None
    return event.encode()


@functools.cache
def _default_encoder() -> Callable[[list[Any]], bytes]:
    """The encoder without `serialize`, built once and shared by every stream (a
    per-stream one would cost ~1 KB per open connection)."""
    return SseEncoder().encode
