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
  *oldest* waiting events are dropped (a live feed wants the newest); each drop is
  reported to the metrics hook as ``items_dropped("sse", name, 1)``. Pass
  ``buffer=BufferPolicy(n, "suspend")`` to slow the source down instead.
- Order is kept. An error from the source is raised from the body after the events
  before it, so the adapter aborts the connection. An item that cannot be encoded (not
  JSON-serializable, a bad `serialize` result, a lone surrogate) raises from the
  body too; the events batched in the same chunk before it are not sent.
- Closing the body cancels the source's task and waits for its cleanup.
- A server shutdown (`streamfx.request_shutdown`) ends the stream on purpose: the events
  already held are sent, then the optional `farewell` event, then a clean end.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterable, Callable
from typing import Any, Final, TypeVar

from streamfx._core.policy import BufferPolicy
from streamfx._response.engine import encode_batches
from streamfx._response.response import StreamResponse
from streamfx._sse.encoder import Serialized, SseEncoder
from streamfx._sse.event import ServerSentEvent, _check_retry

__all__ = ["sse"]

T = TypeVar("T")

SSE_HEADERS: Final[tuple[tuple[str, str], ...]] = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
)
DEFAULT_BUFFER: Final = BufferPolicy(64, "sliding")
OPENING: Final = b":\n\n"
HEARTBEAT: Final = b": ping\n\n"


def sse(
    events: AsyncIterable[T],
    *,
    heartbeat: float | None = 15.0,
    buffer: BufferPolicy | None = None,
    serialize: Callable[[T], Serialized] | None = None,
    retry: int | None = None,
    name: str = "",
    farewell: ServerSentEvent | None = None,
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
    `buffer` overrides the default sliding buffer of 64. `name` labels the stream in
    metrics. When the server shuts down (`streamfx.request_shutdown`), the stream sends
    the events it holds, then `farewell` if given, and ends cleanly.

    Raises `ValueError` (or `TypeError` for a wrong type) at once for a heartbeat that
    is not a positive number, a bad `retry`, a `buffer` that is not a `BufferPolicy` or
    `events` that is not an async iterable.
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
    )
    return StreamResponse(200, list(SSE_HEADERS), body)


@functools.cache
def _default_encoder() -> Callable[[list[Any]], bytes]:
    """The encoder without `serialize`, built once and shared by every stream (a
    per-stream one would cost ~1 KB per open connection)."""
    return SseEncoder().encode
