"""JSON encoders for exports: one JSON array written in batches, and NDJSON.

Each encoder turns a *batch* of items into bytes with one call, for `encode_batches`.

Serialization uses orjson when it is installed (``pip install streamfx[orjson]``), and
the standard `json` module otherwise, with compact separators, UTF-8 output and
``allow_nan=False``. The two differ only at the edges: orjson writes ``NaN`` and
``inf`` as ``null`` where `json` refuses them, orjson serializes `datetime`, `UUID`
and dataclasses natively, and orjson refuses integers beyond 64 bits and non-``str``
dict keys. Both always produce valid JSON or raise (`TypeError` or `ValueError`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Dumps = Callable[[Any], bytes]
"""Serialize one value to UTF-8 JSON bytes."""

_stdlib_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def stdlib_dumps(value: Any) -> bytes:
    """`json`-module serialization: compact, UTF-8, refuses NaN and infinities."""
    return _stdlib_encoder.encode(value).encode("utf-8")


def lines_with(dumps: Dumps) -> Callable[[list[Any]], bytes]:
    """NDJSON for a batch: each item serialized by `dumps`, then ``\n``.

    Each item's bytes go into one growing buffer and are dropped at once: joining a
    list of many small serialized items instead was measured an order of magnitude
    slower with orjson, whose fresh output buffers are costly to keep alive.
    """

    def encode_lines(batch: list[Any]) -> bytes:
        out = bytearray()
        for item in batch:
            out += dumps(item)
            out += b"\n"
        return bytes(out)

    return encode_lines


try:
    import orjson
except ImportError:  # pragma: no cover - exercised by installs without the extra
    default_dumps: Dumps = stdlib_dumps
    default_lines = lines_with(stdlib_dumps)
    USING_ORJSON = False
else:
    default_dumps = orjson.dumps
    USING_ORJSON = True
    _dumps_line = orjson.dumps
    _APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE

    def default_lines(batch: list[Any]) -> bytes:
        """`lines_with(orjson.dumps)`, with orjson writing each line's ``\n`` itself."""
        out = bytearray()
        for item in batch:
            out += _dumps_line(item, option=_APPEND_NEWLINE)
        return bytes(out)


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

    __slots__ = ("_dumps", "_started", "_transform")

    def __init__(
        self,
        dumps: Dumps = default_dumps,
        transform: Callable[[list[Any]], list[Any]] | None = None,
    ) -> None:
        self._dumps = dumps
        self._transform = transform
        self._started = False

    def encode(self, batch: list[Any]) -> bytes:
        if self._transform is not None:
            batch = self._transform(batch)
        if not batch:
            return b""
        array = self._dumps(batch)  # b"[a,b,c]": one call for the whole batch
        if self._started:
            return b"," + array[1:-1]
        self._started = True
        return array[:-1]

    def finish(self) -> bytes:
        return b"]" if self._started else b"[]"


class NdjsonEncoder:
    """Encodes each item as one line of JSON followed by ``\\n`` (NDJSON / JSON Lines).

    `dumps` defaults to orjson (or `json`); JSON text never holds a raw line break, so
    every item is exactly one line.
    """

    __slots__ = ("_lines", "_transform")

    def __init__(
        self,
        dumps: Dumps | None = None,
        transform: Callable[[list[Any]], list[Any]] | None = None,
    ) -> None:
        self._lines = default_lines if dumps is None else lines_with(dumps)
        self._transform = transform

    def encode(self, batch: list[Any]) -> bytes:
        if self._transform is not None:
            batch = self._transform(batch)
        if not batch:
            return b""
        return self._lines(batch)
