"""SSE on the wire, encoding: `ServerSentEvent`, `encode_event` and `data_events`.

This module is the only place that writes SSE fields: `encode_event` writes one event
(what `ServerSentEvent` holds, and what `sse()` sends for one ``str`` or JSON item), and
`data_events` is its batch form for data-only events (equal to `encode_event` applied
to each text, a property test checks it), used by `sse()` for runs of such items.

The parser is `SSEDecoder` (next door). Both follow the WHATWG HTML standard, section
"Server-sent events" (9.2.5 "Parsing an event stream" and 9.2.6 "Interpreting an event stream").

Encoding promises (`ServerSentEvent.encode`):

- Fields are written in the order comment, ``event``, ``id``, ``retry``, ``data``, then
  the blank line that dispatches the event. Text is UTF-8.
- Every value is written after ``": "`` (colon and ONE space). A conformant parser strips
  exactly one space after the colon, so a value that itself starts with a space keeps it.
- Data with line breaks (``\\n``, ``\\r`` or ``\\r\\n``) becomes one ``data:`` line per
  line; a parser joins them with ``\\n``, so ``\\r`` and ``\\r\\n`` come back as ``\\n``.
  Only those three are line breaks in SSE: other characters that `str.splitlines`
  would split on (``\\x0b``, ``\\u2028``, ...) are plain text here (and a client that
  splits lines like `str.splitlines`, as httpx's ``aiter_lines`` does, misreads them;
  JSON data escapes them, see ``streamfx._response.json``).
- ``data=""`` is written as one empty ``data:`` line and dispatches an empty message;
  ``data=None`` writes no data line (such an event only sets id/retry on the client).
- A comment with line breaks becomes one comment line per line.
- Invalid values are refused when the event is *created*, never half-way through a
  stream: CR or LF in ``event`` or ``id`` (they would end the line and let a value inject
  fields), NUL in ``id`` (a client ignores such an id), a ``retry`` that is not a
  non-negative ``int`` (``bool`` is not accepted) -> `ValueError`; a value of the wrong
  type -> `TypeError`.

Events are immutable and encoded once, when created (`encode` returns the same bytes
every time), so an event published to many subscribers costs one encoding; text that
UTF-8 cannot encode (a lone surrogate) is a `UnicodeEncodeError`, a `ValueError`, at
construction too.

Why hand-written: the format is a few lines of text per event, and the encoder is on
the hot path of every stream; the Python SSE libraries each tie the encoder to their
own response class (sse-starlette) or only parse (httpx-sse), so neither fits here.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["ServerSentEvent", "data_events", "encode_event"]

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


def _lines(text: str) -> list[str]:
    """`text` split on SSE line breaks (CRLF, CR, LF) and nothing else."""
    if "\r" in text:
        return _LINE_BREAK.split(text)
    return text.split("\n")


def _check_text(field: str, value: object) -> str:
    if not isinstance(value, str):
        kind = type(value).__name__
        raise TypeError(f"ServerSentEvent {field} must be a str or None, not {kind}")
    return value


def _check_line(field: str, value: object) -> str:
    text = _check_text(field, value)
    if "\n" in text or "\r" in text:
        raise ValueError(
            f"ServerSentEvent {field} must not contain CR or LF (it would end the line): {text!r}"
        )
    return text


def _check_id(value: object) -> str:
    text = _check_line("id", value)
    if "\0" in text:
        raise ValueError(f"ServerSentEvent id must not contain NUL: {text!r}")
    return text


def _check_retry(retry: object) -> int:
    if isinstance(retry, bool) or not isinstance(retry, int):
        raise ValueError(
            f"ServerSentEvent retry must be a non-negative int (milliseconds), "
            f"not {type(retry).__name__}"
        )
    if retry < 0:
        raise ValueError(f"ServerSentEvent retry must be a non-negative int, got {retry}")
    return retry


class ServerSentEvent:
    """One event: `data`, an `event` type, an `id`, a `retry` time (ms), a `comment`.

    Every field is optional. See the module docstring for the exact encoding and for
    what is refused at construction. Two events are equal when all five fields are.
    """

    __slots__ = ("_comment", "_data", "_encoded", "_event", "_id", "_retry")

    def __init__(
        self,
        data: str | None = None,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        # Exact-type fast checks first; anything unusual gets the full check (which raises
        # or accepts a str subclass).
        if data is not None and type(data) is not str:
            _check_text("data", data)
        if event is not None and (type(event) is not str or "\n" in event or "\r" in event):
            _check_line("event", event)
        if id is not None and (type(id) is not str or "\n" in id or "\r" in id or "\0" in id):
            _check_id(id)
        if retry is not None and (type(retry) is not int or retry < 0):
            _check_retry(retry)
        if comment is not None and type(comment) is not str:
            _check_text("comment", comment)
        self._data = data
        self._event = event
        self._id = id
        self._retry = retry
        self._comment = comment
        self._encoded = encode_event(data, event, id, retry, comment)

    @property
    def data(self) -> str | None:
        return self._data

    @property
    def event(self) -> str | None:
        return self._event

    @property
    def id(self) -> str | None:
        return self._id

    @property
    def retry(self) -> int | None:
        return self._retry

    @property
    def comment(self) -> str | None:
        return self._comment

    def encode(self) -> bytes:
        """The event as UTF-8 bytes, ending with the blank line that dispatches it."""
        return self._encoded

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[str | None, str | None, str | None, int | None, str | None]:
        return (self._data, self._event, self._id, self._retry, self._comment)

    def __repr__(self) -> str:
        fields = ("data", "event", "id", "retry", "comment")
        shown = ", ".join(
            f"{name}={value!r}"
            for name, value in zip(fields, self._key(), strict=True)
            if value is not None
        )
        return f"ServerSentEvent({shown})"


def encode_event(
    data: str | None,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """One event as UTF-8, fields already checked: the one writer of event fields."""
    if (
        comment is None
        and retry is None
        and data is not None
        and "\n" not in data
        and "\r" not in data
    ):
        # The common shapes, in one step each.
        if event is None:
            if id is None:
                return f"data: {data}\n\n".encode()
            return f"id: {id}\ndata: {data}\n\n".encode()
        if id is None:
            return f"event: {event}\ndata: {data}\n\n".encode()
        return f"event: {event}\nid: {id}\ndata: {data}\n\n".encode()
    lines: list[str] = []
    if comment is not None:
        lines.extend(": " + line if line else ":" for line in _lines(comment))
    if event is not None:
        lines.append("event: " + event)
    if id is not None:
        lines.append("id: " + id)
    if retry is not None:
        lines.append(f"retry: {retry}")
    if data is not None:
        lines.extend("data: " + line for line in _lines(data))
    lines.append("\n")
    return "\n".join(lines).encode()


def data_events(texts: list[str]) -> bytes:
    """``b"".join(map(encode_event, texts))``: each text as one event's data.

    For the batches of `sse()`: when no text holds a line break (the usual case) the
    whole list is framed by one C-level join, without a Python call per text.
    """
    if not texts:
        return b""
    blob = "".join(texts)
    if "\n" in blob or "\r" in blob:
        return b"".join(map(encode_event, texts))
    return ("data: " + "\n\ndata: ".join(texts) + "\n\n").encode()
