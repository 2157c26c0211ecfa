"""CSV encoder for exports: RFC 4180 text in batches, guarded against formula injection.

Quoting is the standard `csv` module's (``QUOTE_MINIMAL``, ``"\\r\\n"`` line ends,
UTF-8 output), writing each batch with one `writerows` call into a reused buffer.

Promises:

- Rows that are dataclass instances or Pydantic models (an object with
  ``model_dump``) are the dicts the JSON rules make of them (`to_json_native`: a
  dataclass's fields, ``model_dump(mode="json")``), so they need no ``serialize=``.
- Header: `fields` when given, else the first row's keys (dict rows). Sequence rows
  without `fields` get no header. The header goes out with the first rows, or alone at
  the end when the source was empty (no header at all if none is known).
- Dict rows: with explicit `fields`, the fields select and order the columns (other
  keys are left out on purpose); with a header taken from the first row, a later row
  with a key the header lacks raises `ValueError` (its data would be lost silently).
  A missing key, like ``None``, gives an empty cell.
- Sequence rows must all have the header's width (or the first row's): `ValueError`
  otherwise. A row of the wrong kind (a ``str``, a mapping among sequences, ...) is a
  `TypeError`.
- NaN, ``Infinity`` and ``-Infinity`` (``float`` cells) are written as an empty cell,
  as ``None`` is: the rule of every streamfx format (JSON writes them as ``null``), so
  a file never holds the ``nan`` / ``inf`` that the `csv` module would write. The
  check costs two substring searches of the batch's text; only a batch whose text
  contains ``nan`` or ``inf`` (a NaN, or a word such as "info") is looked at cell by
  cell.
- Formula injection (OWASP "CSV Injection"): with the guard on (the default), every
  ``str`` cell, header included, that starts with ``=``, ``+``, ``-``, ``@``, tab or CR
  gets a leading ``'`` so spreadsheets show it as text. Numbers (``int``, ``float``,
  ``Decimal``, ...) are never touched, so ``-5`` stays a number. The guard is
  hand-written (the `csv` module has none); it works column by column so that a clean
  batch costs a few C-level passes rather than a Python test per cell.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

from streamfx._response.json import to_json_native

FORMULA_TRIGGERS = frozenset("=+-@\t\r")
"""First characters that make a spreadsheet treat a cell as a formula."""

_PLAIN_ROWS = frozenset({dict, list, tuple})
_NEVER_TEXT = frozenset({int, float, bool, type(None)})
_ONLY_TEXT = frozenset({str})
_FIRST_CHAR = slice(0, 1)


def neutralize(row: Sequence[Any]) -> list[Any]:
    """`row` with every ``str`` cell that starts with a formula trigger prefixed by ``'``."""
    return [
        "'" + cell if isinstance(cell, str) and cell[:1] in FORMULA_TRIGGERS else cell
        for cell in row
    ]


def neutralize_rows(rows: list[Any]) -> list[Any]:
    """`neutralize` applied to every row; `rows` itself when no cell needs it.

    Works column by column: a column of numbers (or ``None``) is skipped after one
    type check, a column of plain ``str`` is rewritten only if some cell starts with a
    trigger, so the common clean batch costs a few C-level passes instead of a Python
    test per cell.
    """
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    changed = False
    for index, column in enumerate(columns):
        types = set(map(type, column))
        if types <= _NEVER_TEXT:
            continue
        if types == _ONLY_TEXT and (
            # Every trigger sorts before "A": a column whose least value is >= "A" is clean.
            min(column) >= "A"
            or FORMULA_TRIGGERS.isdisjoint(map(str.__getitem__, column, repeat(_FIRST_CHAR)))
        ):
            continue
        columns[index] = neutralize(column)
        changed = True
    return list(zip(*columns, strict=True)) if changed else rows


def _as_row(row: Any) -> Any:
    """A dataclass instance or a Pydantic model as the dict the JSON rules make of it;
    any other row as it is."""
    if isinstance(row, type) or not (
        dataclasses.is_dataclass(row) or callable(getattr(row, "model_dump", None))
    ):
        return row
    return to_json_native(row)


def blank_non_finite(rows: list[Any]) -> list[Any] | None:
    """`rows` with every NaN or infinite ``float`` cell as None, or None if none has one."""
    changed = False
    finite: list[Any] = []
    for row in rows:
        if any(isinstance(cell, float) and not math.isfinite(cell) for cell in row):
            row = [
                None if isinstance(cell, float) and not math.isfinite(cell) else cell
                for cell in row
            ]
            changed = True
        finite.append(row)
    return finite if changed else None


class CsvEncoder:
    """Encodes batches of rows (dicts or sequences) as CSV; see the module docstring.

    `transform`, when given, is applied to each batch first (``export(serialize=)``).
    """

    __slots__ = (
        "_buffer",
        "_explicit",
        "_fields",
        "_getter",
        "_guard",
        "_header_sent",
        "_mapping_rows",
        "_rows_seen",
        "_transform",
        "_width",
        "_writer",
    )

    def __init__(
        self,
        fields: Sequence[str] | None = None,
        *,
        formula_guard: bool = True,
        transform: Callable[[list[Any]], list[Any]] | None = None,
    ) -> None:
        self._transform = transform
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")
        self._guard = formula_guard
        self._explicit = fields is not None
        self._fields: tuple[str, ...] | None = None
        self._getter: Any = None
        self._width = 0
        self._mapping_rows: bool | None = None
        self._header_sent = False
        self._rows_seen = 0
        if fields is not None:
            self._set_fields(tuple(fields))

    def _set_fields(self, fields: tuple[str, ...]) -> None:
        self._fields = fields
        self._width = len(fields)
        if len(fields) == 1:
            key = fields[0]
            self._getter = lambda row: (row[key],)
        else:
            self._getter = itemgetter(*fields)

    def encode(self, batch: list[Any]) -> bytes:
        if self._transform is not None:
            batch = self._transform(batch)
        if not batch:
            return b""
        if not set(map(type, batch)) <= _PLAIN_ROWS:
            batch = [_as_row(row) for row in batch]
        if self._mapping_rows is None:
            self._start(batch[0])
        rows = self._dict_rows(batch) if self._mapping_rows else self._sequence_rows(batch)
        if self._guard:
            rows = neutralize_rows(rows)
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        if not self._header_sent:
            self._write_header()
        start = buffer.tell()
        self._writer.writerows(rows)
        self._rows_seen += len(batch)
        text = buffer.getvalue()
        if "nan" in text or "inf" in text:  # the csv module writes float("nan") as nan
            finite = blank_non_finite(rows)
            if finite is not None:
                buffer.seek(start)
                buffer.truncate()
                self._writer.writerows(finite)
                text = buffer.getvalue()
        return text.encode("utf-8")

    def finish(self) -> bytes:
        """The header alone if no row was ever written and a header is known; else b""."""
        if self._header_sent or self._fields is None:
            return b""
        self._buffer.seek(0)
        self._buffer.truncate()
        self._write_header()
        return self._buffer.getvalue().encode("utf-8")

    # -- internals ----------------------------------------------------------------

    def _start(self, first: Any) -> None:
        self._mapping_rows = isinstance(first, Mapping)
        if self._fields is not None:
            return
        if self._mapping_rows:
            keys = tuple(first)
            if not keys:
                raise ValueError("the first CSV row is an empty dict, so it names no columns")
            bad = next((key for key in keys if not isinstance(key, str)), None)
            if bad is not None:
                raise TypeError(f"CSV column names must be str, got {bad!r}")
            self._set_fields(keys)
        else:
            _check_sequence_row(first, 0)
            self._width = len(first)

    def _write_header(self) -> None:
        self._header_sent = True
        if self._fields is not None:
            header = self._fields
            self._writer.writerow(neutralize(header) if self._guard else header)

    def _dict_rows(self, batch: list[Any]) -> list[Any]:
        try:
            rows = list(map(self._getter, batch))
        except (KeyError, TypeError):
            return [self._dict_row(row, index) for index, row in enumerate(batch)]
        if not self._explicit and max(map(len, batch)) > self._width:
            for index, row in enumerate(batch):
                self._check_extras(row, index)
        return rows

    def _dict_row(self, row: Any, index: int) -> list[Any]:
        if not isinstance(row, Mapping):
            raise TypeError(
                f"CSV row {self._rows_seen + index} is a {type(row).__name__}, "
                "but the rows started as dicts"
            )
        if not self._explicit:
            self._check_extras(row, index)
        assert self._fields is not None
        return [row.get(key, "") for key in self._fields]

    def _check_extras(self, row: Mapping[Any, Any], index: int) -> None:
        assert self._fields is not None
        extra = row.keys() - set(self._fields)
        if extra:
            raise ValueError(
                f"CSV row {self._rows_seen + index} has keys that are not in the header "
                f"{list(self._fields)!r}: {sorted(map(repr, extra))}; pass fields= to "
                "choose the columns explicitly"
            )

    def _sequence_rows(self, batch: list[Any]) -> list[Any]:
        for row_type in set(map(type, batch)):
            if issubclass(row_type, (str, bytes, bytearray, Mapping)) or not issubclass(
                row_type, Sequence
            ):
                index = next(i for i, row in enumerate(batch) if type(row) is row_type)
                _check_sequence_row(batch[index], self._rows_seen + index)
        if set(map(len, batch)) != {self._width}:
            index, row = next((i, r) for i, r in enumerate(batch) if len(r) != self._width)
            raise ValueError(
                f"CSV row {self._rows_seen + index} has {len(row)} cells, expected {self._width}"
            )
        return batch


def _check_sequence_row(row: Any, index: int) -> None:
    if isinstance(row, (str, bytes, bytearray)):
        raise TypeError(f"CSV row {index} is a {type(row).__name__}; rows are dicts or sequences")
    if isinstance(row, Mapping):
        raise TypeError(f"CSV row {index} is a mapping, but the rows started as sequences")
    if not isinstance(row, Sequence):
        raise TypeError(
            f"CSV row {index} is a {type(row).__name__}; rows are dicts or sequences "
            "(lists, tuples)"
        )
