"""The bytes a hub writes: published events (encoded once) and its own control frames.

A published item becomes an event *body*: its SSE lines without an ``id`` and without
the blank line that dispatches it (``b"event: x\\ndata: ...\\n"``). The body is what a
backend stores; `with_id` appends ``id: <id>`` and the blank line once the event's id
is known (in process at once; with Redis when the entry comes back from the stream),
giving the *frame* that every subscriber writes as it is.

Items follow `sse()`'s rules through `encode_body`, the one place that calls the SSE
item encoder (`SseEncoder`): a `ServerSentEvent` as it encodes, a ``str`` as its data,
anything else as its JSON (the rules `sse()` and `export()` share); with `serialize`,
every item goes through it first and it must return a `ServerSentEvent` or a ``str``.
``bytes`` are refused (the hub must place the id inside the event, which it cannot do
in bytes it did not write), and so is an event that carries its own ``id`` (the hub
assigns ids).

Control frames, built per subscriber (they are rare and small):

- `position_frame`: ``id: <position>`` and a blank line: no event is dispatched, but
  the client's last event id becomes the position, so a reconnect resumes from there.
- `reset_frame`: one ``reset`` event whose data names the reason and whose id is the
  position the stream continues from.
- `overflow_frame`: one ``overflow`` event with a ``retry:`` hint and no id, so the
  client reconnects from the last event it really received.
- `farewell_frame`: the hub's farewell (or a bare ``retry:``) with a jittered
  ``retry:`` so that many clients do not reconnect in the same millisecond.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any, Final

from streamfx._sse.encoder import SseEncoder
from streamfx._sse.event import ServerSentEvent

__all__ = [
    "DEFAULT_RECONNECT_MS",
    "PING",
    "encode_body",
    "farewell_frame",
    "jittered",
    "overflow_frame",
    "position_frame",
    "reset_frame",
    "retagged",
    "with_id",
]

PING: Final = b": ping\n\n"
OPENING: Final = b":\n\n"
DEFAULT_RECONNECT_MS: Final = 1000
"""The ``retry:`` base for overflow and farewell frames when none was given."""

Serialize = Callable[[Any], ServerSentEvent | str]


@functools.cache
def _encoder() -> SseEncoder:
    """`sse()`'s item encoder (its rules for text and JSON), made once."""
    return SseEncoder()


def encode_body(item: Any, event: str | None, serialize: Serialize | None) -> bytes:
    """`item` as an event body (see the module docstring); raises `TypeError` or
    `ValueError` for what `sse()` would refuse and for bytes or an event with an id."""
    if serialize is not None:
        item = serialize(item)
        if not isinstance(item, ServerSentEvent | str):
            raise TypeError(
                "Broadcast(serialize=...) must return a ServerSentEvent or a str, "
                f"not {type(item).__name__}"
            )
    if isinstance(item, ServerSentEvent):
        sse_event: ServerSentEvent = item
        if sse_event.id is not None:
            raise ValueError(
                "publish() assigns the event id; pass an event without one "
                f"(got id={sse_event.id!r})"
            )
        if event is not None:
            if sse_event.event is not None and sse_event.event != event:
                raise ValueError(
                    f"publish(event={event!r}) contradicts the event's own type {sse_event.event!r}"
                )
            sse_event = ServerSentEvent(
                sse_event.data, event, None, sse_event.retry, sse_event.comment
            )
        return sse_event.encode()[:-1]
    if isinstance(item, bytes | bytearray | memoryview):
        raise TypeError(
            "publish() cannot send bytes: the hub writes the event id into each event; "
            "pass a ServerSentEvent, a str or a JSON-serializable value"
        )
    lines = _encoder().encode([item])[:-1]
    if event is None:
        return lines
    return ServerSentEvent(event=event).encode()[:-1] + lines


def with_id(body: bytes, event_id: str) -> bytes:
    """The frame: `body`, ``id: <event_id>`` and the blank line that dispatches it."""
    return body + b"id: " + event_id.encode() + b"\n\n"


def retagged(frame: bytes, event_id: str) -> bytes:
    """`frame` with ``id: <event_id>`` as its only id line (a subscriber to several
    topics writes its composite position as each event's id). The frame's own id line
    is cut out wherever it stands (last in a published frame, `with_id`; first in a
    `reset_frame`): no other line of a frame starts with ``id: ``."""
    if frame.startswith(b"id: ") or b"\nid: " in frame:
        start = 0 if frame.startswith(b"id: ") else frame.index(b"\nid: ") + 1
        frame = frame[:start] + frame[frame.index(b"\n", start) + 1 :]
    return frame[:-1] + b"id: " + event_id.encode() + b"\n\n"


def jittered(base_ms: int) -> int:
    """A reconnection delay drawn uniformly from ``[base_ms, 2 * base_ms)``."""
    return base_ms + int(random.random() * base_ms)


def position_frame(position: str) -> bytes:
    return b"id: " + position.encode() + b"\n\n"


def reset_frame(position: str, reason: str) -> bytes:
    return ServerSentEvent(reason, event="reset", id=position).encode()


def overflow_frame(retry_ms: int) -> bytes:
    return ServerSentEvent("behind", event="overflow", retry=jittered(retry_ms)).encode()


def farewell_frame(farewell: ServerSentEvent | None, retry_ms: int) -> bytes:
    if farewell is None:
        return f"retry: {jittered(retry_ms)}\n\n".encode()
    base = farewell.retry if farewell.retry is not None else retry_ms
    return ServerSentEvent(
        farewell.data, farewell.event, None, jittered(base), farewell.comment
    ).encode()
