"""JSON encoders for exports: one JSON array written in batches, and NDJSON.

Each encoder turns a *batch* of items into bytes with one call, for `encode_batches`.
Every item is written by `JsonSerializer` (``streamfx._response.json``), the one set
of JSON rules that `sse()` uses too, with orjson when it is installed and the standard
`json` module otherwise: both accept and refuse the same items and write the same
JSON. An item that cannot be written raises (`TypeError` or `ValueError`) and nothing
of its batch is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamfx._response.json import JsonSerializer, default_serializer

Transform = Callable[[list[Any]], list[Any]]
"""Applied to each batch before it is encoded (`project`, a ``serialize=`` function)."""


def project(fields: Sequence[str]) -> Callable[[list[Any]], list[dict[str, Any]]]:
    """A batch transform keeping only `fields`, in that order; a missing key gives None.

    Raises `TypeError` for an item that is not a mapping.
    """

    def select(batch: list[Any]) -> list[dict[str, Any]]:
        try:
            return [{key: item.get(key) for key in fields} for item in batch]
        except AttributeError:
            bad = next(item for item in batch if not isinstance(item, Mapping))
            raise TypeError(
                f"export with fields needs mapping items, got {type(bad).__name__}"
            ) from None

    return select


class JsonArrayEncoder:
    """Encodes one JSON array across batches: ``[a,b`` then ``,c,d`` ... then ``]``.

    The closing bracket comes only from `finish`, which `encode_batches` calls only
    when the source is exhausted: a stream that fails midway never looks complete.
    """

    __slots__ = ("_json", "_started", "_transform")

    def __init__(
        self, json: JsonSerializer | None = None, transform: Transform | None = None
    ) -> None:
        self._json = default_serializer() if json is None else json
        self._transform = transform
        self._started = False

    def encode(self, batch: list[Any]) -> bytes:
        if self._transform is not None:
            batch = self._transform(batch)
        if not batch:
            return b""
        array = self._json.dumps(batch)  # b"[a,b,c]": one call for the whole batch
        if self._started:
            return b"".join((b",", memoryview(array)[1:-1]))  # one copy
        self._started = True
        return array[:-1]

    def finish(self) -> bytes:
        return b"]" if self._started else b"[]"


class NdjsonEncoder:
    """Encodes each item as one line of JSON followed by ``\\n`` (NDJSON / JSON Lines).

    JSON text never holds a raw line break, and U+2028, U+2029 and U+0085 are escaped,
    so every item is exactly one line, however a client splits lines.
    """

    __slots__ = ("_json", "_transform")

    def __init__(
        self, json: JsonSerializer | None = None, transform: Transform | None = None
    ) -> None:
        self._json = default_serializer() if json is None else json
        self._transform = transform

    def encode(self, batch: list[Any]) -> bytes:
        if self._transform is not None:
            batch = self._transform(batch)
        if not batch:
            return b""
        return self._json.lines(batch)
