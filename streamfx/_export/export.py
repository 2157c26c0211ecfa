"""`export`: stream rows as a JSON array, NDJSON or CSV download.

The body is `encode_batches` with one of the export encoders: every row that is ready
is encoded with one call and leaves in one chunk, so a fast source (a database cursor,
a list) goes out in few large writes while a slow one still sends each row at once.

Promises:

- Bad arguments (an unknown format, bad `fields`, a buffer that is not a ``"suspend"``
  `BufferPolicy`: a file with silently dropped rows is never what anyone wants) raise
  when `export` is called, before anything is sent. Any `filename` string is accepted:
  `content_disposition` rewrites one that cannot be sent as it is (CR/LF, bidi
  controls, path separators, over-long names).
- The body ends with a complete document only when the source is exhausted. When the
  source raises (or a row cannot be encoded), the body raises after the chunks of the
  rows before it: a JSON array then lacks its closing ``]``, and the adapter aborts the
  connection, so no client mistakes a truncated export for a whole one.
- Closing the body early (a client that disconnects) cancels the source and waits for
  its cleanup (``finally`` blocks, ``aclose()``).
- Memory: at most ``buffer.capacity`` rows (default 128, ``"suspend"``) are held, plus
  the batch being encoded; a slow client slows the source.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, TypeVar, get_args

from streamfx._core.policy import BufferPolicy
from streamfx._export.csv_encoder import CsvEncoder
from streamfx._export.json_encoders import JsonArrayEncoder, NdjsonEncoder, Transform, project
from streamfx._response.disposition import content_disposition
from streamfx._response.engine import encode_batches
from streamfx._response.response import StreamResponse

T = TypeVar("T")

ExportFormat = Literal["json", "ndjson", "csv"]

EXPORT_FORMATS: Final[tuple[str, ...]] = get_args(ExportFormat)
DEFAULT_EXPORT_BUFFER: Final = BufferPolicy(128, "suspend")
CONTENT_TYPES: Final[Mapping[str, str]] = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
}


def export(
    items: AsyncIterable[Any] | Iterable[Any],
    format: ExportFormat | str,
    *,
    filename: str | None = None,
    fields: Sequence[str] | None = None,
    buffer: BufferPolicy | None = None,
    csv_formula_guard: bool = True,
    serialize: Callable[[Any], Any] | None = None,
    name: str = "",
) -> StreamResponse:
    """A `StreamResponse` whose body is `items` encoded as `format`.

    `format` is one of the strings below (a path parameter can be passed as it is);
    any other value is a `ValueError`.

    - ``"json"``: one JSON array (``[]`` for no items), ``application/json``.
    - ``"ndjson"``: one JSON value per line, ``application/x-ndjson``.
    - ``"csv"``: RFC 4180 with a header row, ``text/csv; charset=utf-8``; rows are dicts
      or sequences. `csv_formula_guard` (on by default) prefixes ``'`` to text cells
      that start with ``= + - @``, tab or CR so spreadsheets do not run them as
      formulas; numbers are never changed. Turn it off only when the file is not meant
      for a spreadsheet.

    JSON items are written by the rules `sse()` uses too: JSON natives, datetimes
    (ISO 8601), UUIDs, enums, dataclasses and Pydantic models; NaN and infinities are
    written as ``null`` (in CSV: an empty cell, as None is); any other type is a
    `TypeError`. `serialize`, when given, is applied to every item first (to turn an
    object into a row or a JSON-able value).

    `fields` selects and orders the columns (CSV) or keys (JSON formats: each item must
    then be a mapping; a missing key becomes ``null``). `filename` adds
    ``Content-Disposition: attachment``. `items` may be a sync iterable, which must not
    block (it is iterated on the event loop). `buffer` overrides the default
    ``BufferPolicy(128, "suspend")`` (its strategy must stay ``"suspend"``); `name`
    labels the stream in metrics.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {EXPORT_FORMATS}")
    if isinstance(items, (str, bytes, bytearray, Mapping)):
        raise TypeError(
            f"items must be an iterable of rows, not a {type(items).__name__} "
            "(which would be split into characters or keys)"
        )
    if not isinstance(items, (AsyncIterable, Iterable)):
        raise TypeError(f"items must be an (async) iterable, not {type(items).__name__}")
    policy = DEFAULT_EXPORT_BUFFER if buffer is None else buffer
    if not isinstance(policy, BufferPolicy):
        raise TypeError(f"buffer must be a BufferPolicy, not {type(policy).__name__}")
    if policy.strategy != "suspend":
        raise ValueError(
            f"an export must not lose rows, so its buffer strategy must be 'suspend', "
            f"not {policy.strategy!r}"
        )
    columns = None if fields is None else _check_fields(fields)
    if serialize is not None and not callable(serialize):
        raise TypeError(f"serialize must be callable, not {type(serialize).__name__}")
    headers = [("content-type", CONTENT_TYPES[format])]
    if filename is not None:
        headers.append(("content-disposition", content_disposition(filename)))
    source = items if isinstance(items, AsyncIterable) else _iterate(items)

    encoder: CsvEncoder | JsonArrayEncoder | NdjsonEncoder
    if format == "csv":
        encoder = CsvEncoder(
            columns, formula_guard=csv_formula_guard, transform=_converting(serialize)
        )
        finish = encoder.finish
    else:
        transform = _converting(serialize, None if columns is None else project(columns))
        if format == "json":
            encoder = JsonArrayEncoder(transform=transform)
            finish = encoder.finish
        else:
            encoder = NdjsonEncoder(transform=transform)
            finish = None
    body = encode_batches(source, policy, encoder.encode, kind="export", name=name, finish=finish)
    return StreamResponse(200, headers, body)


def _converting(
    serialize: Callable[[Any], Any] | None, then: Transform | None = None
) -> Transform | None:
    """The batch transform that applies `serialize` to every item, then `then`."""
    if serialize is None:
        return then
    if then is None:
        return lambda batch: list(map(serialize, batch))
    return lambda batch: then(list(map(serialize, batch)))


def _check_fields(fields: Sequence[str]) -> tuple[str, ...]:
    if isinstance(fields, str):
        raise TypeError("fields must be a sequence of column names, not a single str")
    columns = tuple(fields)
    if not columns:
        raise ValueError("fields must name at least one column")
    bad = next((field for field in columns if not isinstance(field, str)), None)
    if bad is not None:
        raise TypeError(f"field names must be str, got {bad!r}")
    if len(set(columns)) != len(columns):
        duplicates = sorted({field for field in columns if columns.count(field) > 1})
        raise ValueError(f"fields must be unique; repeated: {duplicates}")
    return columns


async def _iterate(items: Iterable[T]) -> AsyncIterator[T]:
    """`items` as an async iterator; closing it early also closes a sync generator."""
    iterator = iter(items)
    try:
        for item in iterator:
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
