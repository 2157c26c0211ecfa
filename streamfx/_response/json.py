"""The one JSON serializer behind `sse()` and `export()`: one set of rules, two back ends.

`JsonSerializer` writes JSON with orjson when it is installed (``streamfx[orjson]``)
and with the standard `json` module otherwise. Both back ends accept and refuse exactly
the same values and write equivalent JSON (equal once parsed; tests check it value by
value); orjson only changes the speed.

The rules:

- ``dict``, ``list``, ``tuple``, ``str``, ``int`` (of any size), ``float``, ``bool``,
  ``None``, and their subclasses, are written as JSON.
- Dict keys are ``str``; ``int``, ``float``, ``bool`` and ``None`` keys become strings
  as the `json` module writes them (``1`` -> ``"1"``, ``True`` -> ``"true"``, ``None``
  -> ``"null"``). Any other key -> `TypeError`.
- ``NaN``, ``Infinity`` and ``-Infinity`` (``float`` values, subclasses included) ->
  ``null``, as orjson and JavaScript's ``JSON.stringify`` write them: JSON has no such
  values, and ``null`` keeps every text valid JSON (`json.dumps` would write the
  invalid token ``NaN``). As a dict *key*, a non-finite float becomes the string the
  `json` module (and JavaScript's ``String()``) gives it: ``"NaN"``, ``"Infinity"``,
  ``"-Infinity"``.
- `datetime.datetime`, `~datetime.date`, `~datetime.time` -> their ``isoformat()``
  (ISO 8601); `uuid.UUID` -> its canonical string; an `enum.Enum` member -> its value;
  a dataclass instance -> an object of its fields (`dataclasses.fields` order); an
  object with a ``model_dump`` method (a Pydantic v2 model; Pydantic is not imported)
  -> ``model_dump(mode="json")``. What these give is written by the same rules.
- Anything else -> `TypeError` naming the type, which points to ``serialize=``.
- A container that holds itself -> `ValueError`; nesting deeper than the interpreter's
  recursion limit -> `RecursionError`; a ``str`` with a lone surrogate ->
  `UnicodeEncodeError` (a `ValueError`) once the text is encoded.
- The output is compact (no spaces) UTF-8; characters beyond ASCII are written as they
  are, except U+2028, U+2029 and U+0085, written as ``\\u2028``, ``\\u2029`` and
  ``\\u0085``: clients that split text into lines like `str.splitlines` (httpx's
  ``aiter_lines``, which SSE and NDJSON readers are built on) would otherwise cut a
  JSON text in two, and could read the rest of a string as SSE fields.

Why two back ends: orjson is several times faster than `json` (a batch of rows is one
orjson call), and streamfx must still work without it. orjson is called with
``OPT_PASSTHROUGH_DATETIME`` and ``OPT_PASSTHROUGH_DATACLASS`` so those go to the same
converter the `json` path uses (orjson's own writers round sub-minute UTC offsets,
``+00:19:32`` -> ``+00:20``, and skip dataclass fields whose names start with ``_``).
``OPT_NON_STR_KEYS`` is *not* used: it writes float keys its own way (``"1e-7"`` where
`json` writes ``"1e-07"``) and accepts datetime, UUID and Enum keys that `json` refuses.
Whatever orjson refuses (a non-``str`` key, an int beyond 64 bits, nesting deeper than
254, a ``float`` or ``tuple`` subclass, a surrogate) is written by the `json` path, which
decides; so such values cost `json`'s speed. The non-finite rule is orjson's own, so
the orjson path checks nothing. The `json` path encodes with ``allow_nan=False``, and
only when that refuses a value (a non-finite float is in it) rewrites the value with
`finite_copy` and encodes the copy: a value without NaN pays nothing for the rule.

Why hand-written: the converter and `finite_copy` are the few lines that make the two
libraries agree; no library offers that.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import json
import math
import uuid
from collections.abc import Callable
from typing import Any, Final

__all__ = ["JsonSerializer", "default_serializer"]

NOT_SERIALIZABLE_HINT: Final = (
    "streamfx writes dict, list, tuple, str, int, float, bool, None, datetime, date, "
    "time, UUID, Enum, dataclasses and objects with model_dump() (Pydantic); pass "
    "serialize= to turn other items into one of these"
)

_ESCAPES: Final = (
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
    ("\u0085", "\\u0085"),
)


@functools.lru_cache(maxsize=256)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(cls))


def to_json_native(obj: Any) -> Any:
    """`obj` (not a JSON native) as something that is, by the module's rules.

    The ``default`` of both back ends. Raises `TypeError` for a type with no rule.
    """
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, datetime.date | datetime.time):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if not isinstance(obj, type):
        model_dump = getattr(obj, "model_dump", None)
        if model_dump is not None:
            return model_dump(mode="json")
        if dataclasses.is_dataclass(obj):
            cls: type = type(obj)
            return {name: getattr(obj, name) for name in _field_names(cls)}
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def finite_copy(value: Any) -> Any:
    """`value` made of JSON natives only, with every non-finite float as None.

    For the values the `json` path refused with ``allow_nan=False``: objects are
    converted with `to_json_native` first (a dataclass or a model may hold a NaN), a
    non-finite float key becomes ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, and
    everything else is kept as the `json` module would write it, so encoding the copy
    gives what the value would give with NaN written as null. A container that holds
    itself -> `ValueError`, as in `json`.
    """
    return _finite(value, set())


def _finite(value: Any, markers: set[int]) -> Any:
    if isinstance(value, str):  # the `json` module's order of checks
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, list | tuple | dict):
        marker = id(value)
        if marker in markers:
            raise ValueError("Circular reference detected")
        markers.add(marker)
        if isinstance(value, dict):
            copy: Any = {_finite_key(key): _finite(item, markers) for key, item in value.items()}
        else:
            copy = [_finite(item, markers) for item in value]
        markers.discard(marker)
        return copy
    return _finite(to_json_native(value), markers)


def _finite_key(key: Any) -> Any:
    if isinstance(key, float) and not math.isfinite(key):
        return json.dumps(key)  # "NaN", "Infinity" or "-Infinity", as json writes keys
    return key


def escape_line_separators(text: str) -> str:
    """`text` (JSON) with U+2028, U+2029 and U+0085 written as ``\\u`` escapes."""
    for char, escape in _ESCAPES:
        if char in text:
            text = text.replace(char, escape)
    return text


def _escape_bytes(data: bytes) -> bytes:
    """`escape_line_separators` for UTF-8 JSON (the first test of each is a memchr)."""
    if 0xE2 in data:
        data = data.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    if 0xC2 in data:
        data = data.replace(b"\xc2\x85", b"\\u0085")
    return data


class JsonSerializer:
    """Writes values as JSON by the module's rules; see the module docstring.

    `use_orjson`: None (the default) uses orjson when it can be imported; False never
    does (the standard library only); True requires it (`ImportError` otherwise).

    Every call that takes a list of values writes all of them or raises; when orjson
    refuses one value, the `json` path writes the whole list (and decides).
    """

    __slots__ = ("_line_option", "_option", "_orjson", "_stdlib")

    def __init__(self, *, use_orjson: bool | None = None) -> None:
        self._stdlib = json.JSONEncoder(
            ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=to_json_native
        )
        self._orjson: Callable[[Any, Callable[[Any], Any], int], bytes] | None = None
        self._option = self._line_option = 0
        if use_orjson is not False:
            try:
                import orjson
            except ImportError:
                if use_orjson:
                    raise
            else:
                self._orjson = orjson.dumps
                self._option = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                self._line_option = self._option | orjson.OPT_APPEND_NEWLINE

    @property
    def uses_orjson(self) -> bool:
        return self._orjson is not None

    def dumps(self, value: Any) -> bytes:
        """`value` as one JSON text, UTF-8."""
        if self._orjson is not None:
            try:
                data = self._orjson(value, to_json_native, self._option)
            except TypeError:
                pass
            else:
                return data if data.isascii() else _escape_bytes(data)
        return self._stdlib_text(value).encode()

    def text(self, value: Any) -> str:
        """`value` as one JSON text, as ``str`` (for SSE data)."""
        if self._orjson is not None:
            try:
                text = self._orjson(value, to_json_native, self._option).decode()
            except TypeError:
                pass
            else:
                return text if text.isascii() else escape_line_separators(text)
        return self._stdlib_text(value)

    def lines(self, values: list[Any]) -> bytes:
        """Each value's JSON text followed by ``\\n`` (NDJSON)."""
        dumps = self._orjson
        if dumps is not None:
            option = self._line_option
            out = bytearray()
            try:
                # Each text is copied and dropped at once: orjson's fresh output buffers
                # are costly to keep alive (joining a list of them measured 10x slower).
                for value in values:
                    out += dumps(value, to_json_native, option)
            except TypeError:
                pass
            else:
                return bytes(out) if out.isascii() else _escape_bytes(bytes(out))
        text = self._stdlib_text
        return "".join([text(value) + "\n" for value in values]).encode()

    def texts(self, values: list[Any]) -> list[str]:
        """Each value's JSON text, as ``str`` (for SSE data)."""
        dumps = self._orjson
        if dumps is not None:
            option = self._option
            try:
                texts = [dumps(value, to_json_native, option).decode() for value in values]
            except TypeError:
                pass
            else:
                if all(map(str.isascii, texts)):
                    return texts
                return list(map(escape_line_separators, texts))
        return [self._stdlib_text(value) for value in values]

    def _stdlib_text(self, value: Any) -> str:
        """`value` by the `json` path: the one that decides what orjson refuses."""
        encode = self._stdlib.encode
        try:
            try:
                text = encode(value)
            except ValueError as exc:
                if not str(exc).startswith("Out of range float values"):
                    raise
                text = encode(finite_copy(value))  # NaN and infinities -> null
        except TypeError as exc:
            raise TypeError(f"{exc}; {NOT_SERIALIZABLE_HINT}") from exc
        return text if text.isascii() else escape_line_separators(text)


@functools.cache
def default_serializer() -> JsonSerializer:
    """The shared serializer: orjson when installed, else the standard library."""
    return JsonSerializer()
