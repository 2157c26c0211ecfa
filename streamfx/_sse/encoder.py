"""`SseEncoder`: the items of an `sse()` stream as ``text/event-stream`` bytes, by batch.

Each item becomes one event (the one item -> bytes dispatch, by the item's type):

- a `ServerSentEvent` (or subclass): its ``encode()``;
- a ``str`` (or subclass, such as a ``StrEnum`` member: its text): the event's data,
  written by `data_events` (line breaks become several ``data:`` lines);
- ``bytes``, ``bytearray`` or ``memoryview``: already encoded, passed through untouched;
- anything else: its JSON text (`JsonSerializer`, the rules shared with `export()`)
  as the data. JSON never holds a raw line break, and U+2028, U+2029 and U+0085 are
  escaped, so it is always exactly one ``data:`` line, however the client splits lines.

With `serialize`, every item goes through it first and must come back as one of the
first three kinds; anything else is a `TypeError`.

A batch is encoded in one pass: `itertools.groupby` cuts it, at C speed, into runs of
items of one type (a batch from one source is usually a single run); each run is
encoded by its kind with C-level joins (no Python call per ``str`` or event), and the
runs are joined. Order is kept. An item that cannot be encoded raises, and nothing of
its batch is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from operator import attrgetter, methodcaller
from typing import Any, Final, TypeVar

from streamfx._response.json import JsonSerializer, default_serializer
from streamfx._sse.event import ServerSentEvent, data_events

__all__ = ["Serialized", "SseEncoder"]

T = TypeVar("T")

Serialized = ServerSentEvent | str | bytes
"""What a `serialize` function returns."""

RunEncoder = Callable[[list[Any]], bytes]

_encoded: Final = attrgetter("_encoded")  # ServerSentEvent.encode(), without a Python call
_encode: Final = methodcaller("encode")


def _events(run: list[ServerSentEvent]) -> bytes:
    return b"".join(map(_encoded, run))


def _event_subclasses(run: list[ServerSentEvent]) -> bytes:
    return b"".join(map(_encode, run))


def _texts(run: list[str]) -> bytes:
    return data_events(run).encode()


def _str_subclasses(run: list[str]) -> bytes:
    return data_events(list(map(str.__str__, run))).encode()


def _raw(run: list[bytes | bytearray | memoryview]) -> bytes:
    return b"".join(run)


class SseEncoder:
    """Encodes batches of `sse()` items; see the module docstring.

    `serialize` (optional) converts every item first. `json` is the serializer for
    items that are neither events, text nor bytes (the shared default when None).
    """

    __slots__ = ("_by_type", "_json", "_serialize")

    def __init__(
        self,
        serialize: Callable[[Any], Serialized] | None = None,
        json: JsonSerializer | None = None,
    ) -> None:
        self._serialize = serialize
        self._json = default_serializer() if json is None else json
        self._by_type: dict[type, RunEncoder] = {
            ServerSentEvent: _events,
            str: _texts,
            bytes: _raw,
        }
        if serialize is None:
            for kind in (dict, list, tuple, int, float, bool, type(None)):
                self._by_type[kind] = self._json_events

    def encode(self, batch: list[Any]) -> bytes:
        """The events of every item of `batch`, in order, as one chunk."""
        if self._serialize is not None:
            batch = list(map(self._serialize, batch))
        by_type = self._by_type
        return b"".join(
            [
                (by_type.get(kind) or self._run_encoder(kind))(list(run))
                for kind, run in groupby(batch, type)
            ]
        )

    def _run_encoder(self, kind: type) -> RunEncoder:
        """The encoder for a run of items of `kind`, a type with no entry yet."""
        if issubclass(kind, ServerSentEvent):
            return _event_subclasses
        if issubclass(kind, str):
            return _str_subclasses
        if issubclass(kind, bytes | bytearray | memoryview):
            return _raw
        if self._serialize is not None:
            raise TypeError(
                "sse(serialize=...) must return a ServerSentEvent, str or bytes, "
                f"not {kind.__name__}"
            )
        return self._json_events

    def _json_events(self, run: list[Any]) -> bytes:
        return data_events(self._json.texts(run)).encode()
