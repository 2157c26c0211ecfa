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
  JSON-serializable, a bad `serialize` result, a lone surrogate) raises from the body
  too; the events batched in the same chunk before it are not sent.
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
from streamfx._sse.event import ServerSentEvent, _check_retry, encode_data

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

Serialized = ServerSentEvent | str | bytes


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
    - ``bytes`` are taken as already encoded and passed through untouched (they must be
      whole events, ending with a blank line);
    - anything else is sent as its compact JSON as the data (orjson when installed,
      else the standard ``json`` module); an item JSON cannot encode raises `TypeError`
      from the body.

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
    encode = _default_encoder() if serialize is None else _batch_encoder(serialize)
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


_encode_event: Final = ServerSentEvent.encode
_STR: Final = {str}
_EVENT: Final = {ServerSentEvent}


def _stdlib_dumps() -> Callable[[Any], bytes]:
    import json

    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    return lambda value: encoder.encode(value).encode()


def _json_dumps() -> tuple[Callable[[Any], bytes], Callable[[Any], bytes]]:
    """(orjson's ``dumps`` when installed, else ``json``'s; ``json``'s).

    What orjson refuses but ``json`` takes (an int beyond 64 bits, a dict with int
    keys) is handed to ``json``, so orjson changes the speed, never what can be sent.
    """
    stdlib = _stdlib_dumps()
    try:
        import orjson
    except ImportError:
        return stdlib, stdlib
    return orjson.dumps, stdlib


@functools.cache
def _default_encoder() -> Callable[[list[Any]], bytes]:
    """The encoder without `serialize`, built once and shared by every stream (its
    closures would otherwise cost ~0.8 KB per open connection)."""
    return _batch_encoder(None)


def _batch_encoder(
    serialize: Callable[[T], Serialized] | None,
) -> Callable[[list[T]], bytes]:
    """One function that encodes a whole batch of items into one chunk."""
    dumps, stdlib_dumps = _json_dumps()

    def encode_other(item: Any) -> bytes:
        if isinstance(item, str):  # a str subclass, such as a StrEnum member
            return encode_data(str(item))
        if isinstance(item, bytes | bytearray | memoryview):
            return bytes(item)
        if isinstance(item, ServerSentEvent):
            return item.encode()
        # Compact JSON never holds a raw line break (they are escaped in strings).
        try:
            return b"data: " + dumps(item) + b"\n\n"
        except TypeError as exc:
            error = exc
        try:
            return b"data: " + stdlib_dumps(item) + b"\n\n"
        except TypeError:
            raise TypeError(
                f"sse() cannot send an item of type {type(item).__name__}: it is not "
                "JSON-serializable; pass serialize= to turn it into a ServerSentEvent, "
                "str or bytes"
            ) from error

    def encode_mixed(batch: list[Any]) -> bytes:
        parts: list[bytes] = []
        append = parts.append
        for item in batch:
            kind = type(item)
            if kind is ServerSentEvent:
                append(item.encode())
            elif kind is str:
                if "\n" in item or "\r" in item:
                    append(encode_data(item))
                else:
                    append(("data: " + item + "\n\n").encode())
            elif kind is bytes:
                append(item)
            else:
                append(encode_other(item))
        return b"".join(parts)

    def encode(batch: list[Any]) -> bytes:
        # Fast paths for batches of one kind: C-level joins instead of a Python loop.
        kinds = set(map(type, batch))
        if kinds == _STR:
            text = "\n\ndata: ".join(batch)
            # Only the separators' line breaks: no item holds one of its own.
            if "\r" not in text and text.count("\n") == 2 * len(batch) - 2:
                return ("data: " + text + "\n\n").encode()
        elif kinds == _EVENT:
            return b"".join(map(_encode_event, batch))
        return encode_mixed(batch)

    if serialize is None:
        return encode

    def encode_serialized(batch: list[T]) -> bytes:
        converted: list[Serialized] = []
        for item in batch:
            result = serialize(item)
            if not isinstance(result, ServerSentEvent | str | bytes):
                raise TypeError(
                    "sse(serialize=...) must return a ServerSentEvent, str or bytes, "
                    f"not {type(result).__name__}"
                )
            converted.append(result)
        return encode(converted)

    return encode_serialized
