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

Each kind has two encoders: `Kind.one` for one item and `Kind.many` for a list of
items of that kind, equal by definition (``many(items) == b"".join(map(one, items))``,
a property test checks it); ``many`` frames the whole list with C-level joins, without
a Python call per ``str`` or event. A lone item (what an idle stream sends) is encoded by
its kind's ``one``. A larger batch's item types are collected in one C-level pass: a
batch of one type (the usual case, a source yields one kind of item) is encoded by that
kind's ``many``; a mixed batch item by item with ``one``, in order.
An item that cannot be encoded raises, and nothing of its batch is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter, methodcaller
from typing import Any, Final, NamedTuple

from streamfx._response.json import JsonSerializer, default_serializer
from streamfx._sse.event import ServerSentEvent, data_events, encode_event

__all__ = ["Kind", "Serialized", "SseEncoder"]

Serialized = ServerSentEvent | str | bytes
"""What a `serialize` function returns."""


class Kind(NamedTuple):
    """How one kind of item becomes events: alone, and as a run of several."""

    one: Callable[[Any], bytes]
    many: Callable[[list[Any]], bytes]


_encoded: Final = attrgetter("_encoded")  # ServerSentEvent.encode(), without a Python call
_encode: Final = methodcaller("encode")


def _join(encode: Callable[[Any], bytes]) -> Callable[[list[Any]], bytes]:
    return lambda run: b"".join(map(encode, run))


def _str_subclass(text: str) -> bytes:
    return encode_event(str.__str__(text))


EVENTS: Final = Kind(_encoded, _join(_encoded))
EVENT_SUBCLASSES: Final = Kind(_encode, _join(_encode))
TEXTS: Final = Kind(encode_event, data_events)
STR_SUBCLASSES: Final = Kind(_str_subclass, _join(_str_subclass))
RAW: Final = Kind(bytes, b"".join)


class SseEncoder:
    """Encodes batches of `sse()` items; see the module docstring.

    `serialize` (optional) converts every item first. `json` is the serializer for
    items that are neither events, text nor bytes (the shared default when None).
    """

    __slots__ = ("_json", "_json_kind", "_kinds", "_serialize")

    def __init__(
        self,
        serialize: Callable[[Any], Serialized] | None = None,
        json: JsonSerializer | None = None,
    ) -> None:
        self._serialize = serialize
        self._json = default_serializer() if json is None else json
        self._json_kind = Kind(self._json_event, self._json_events)
        self._kinds: dict[type, Kind] = {ServerSentEvent: EVENTS, str: TEXTS, bytes: RAW}
        if serialize is None:
            for kind in (dict, list, tuple, int, float, bool, type(None)):
                self._kinds[kind] = self._json_kind

    def encode(self, batch: list[Any]) -> bytes:
        """The events of every item of `batch`, in order, as one chunk."""
        if self._serialize is not None:
            batch = list(map(self._serialize, batch))
        if len(batch) == 1:  # a lone item (an idle stream's event): no scan, no join
            item = batch[0]
            return self._kind(type(item)).one(item)
        types = set(map(type, batch))
        if len(types) == 1:  # the usual batch: its kind frames it with C-level joins
            return self._kind(types.pop()).many(batch)
        one = {item_type: self._kind(item_type).one for item_type in types}
        return b"".join([one[type(item)](item) for item in batch])

    def _kind(self, item_type: type) -> Kind:
        return self._kinds.get(item_type) or self._kind_of(item_type)

    def _kind_of(self, item_type: type) -> Kind:
        """The kind of a type with no entry of its own (subclasses, other objects)."""
        if issubclass(item_type, ServerSentEvent):
            return EVENT_SUBCLASSES
        if issubclass(item_type, str):
            return STR_SUBCLASSES
        if issubclass(item_type, bytes | bytearray | memoryview):
            return RAW
        if self._serialize is not None:
            raise TypeError(
                "sse(serialize=...) must return a ServerSentEvent, str or bytes, "
                f"not {item_type.__name__}"
            )
        return self._json_kind

    def _json_event(self, value: Any) -> bytes:
        return encode_event(self._json.text(value))

    def _json_events(self, run: list[Any]) -> bytes:
        return data_events(self._json.texts(run))
