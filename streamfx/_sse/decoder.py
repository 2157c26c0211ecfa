"""Server-Sent Events on the wire, parsing: `SSEDecoder` and `SSEDecodeError`.

It follows the WHATWG HTML standard, section "Server-sent events" (9.2.5 "Parsing an
event stream" and 9.2.6 "Interpreting an event stream"), and the reconnection rules its
``EventSource`` keeps (the web-platform-tests ``eventsource/format-field-id*`` and
``format-data-before-final-empty-line`` cases): the last event ID outlives a
connection, an event left unfinished by one does not.

The standard sets no limit on a line or an event; a decoder fed by an untrusted server
needs one, or a stream without line ends (or ``data:`` lines without a blank line)
grows it without end. `max_line` and `max_event` are those limits.

The limits count characters, so the memory has to follow the characters, not the
lines or the chunks they came in: a Python string costs 49-80 bytes before its first
character, and a decoder holding one string per data line (or per piece of a line that
trickles in) holds 20-40 bytes per counted character when the lines are short: 1.9 MB
for 200 KB of ``data:€`` lines, and so some 400 MB under the default `max_event`. And
splitting a whole chunk into its lines at once costs as much per line: 1 MB for a
64 KiB chunk of short lines. So a chunk is parsed `_SLICE` bytes at a time (the lines
of one slice split at once), and the pieces of a pending line and the data lines of an
event are joined every `_BLOCK` pieces into one string (`_join_block`): each character
is copied at most twice more, and a string's own cost is paid once per block.
"""

from __future__ import annotations

import codecs
import contextlib
from typing import Final, Literal

from streamfx._sse.event import ServerSentEvent, _lines

__all__ = ["DEFAULT_MAX_EVENT", "DEFAULT_MAX_LINE", "SSEDecodeError", "SSEDecoder"]

DEFAULT_MAX_LINE: Final = 1 << 20
"""The default `SSEDecoder.max_line`: 1 Mi characters."""
DEFAULT_MAX_EVENT: Final = 8 << 20
"""The default `SSEDecoder.max_event`: 8 Mi characters."""

Limit = Literal["max_line", "max_event"]

_SLICE: Final = 2048  # bytes of a chunk parsed at a time (see the module docstring)
_BLOCK: Final = 128  # pieces joined into one string (see the module docstring)


class SSEDecodeError(ValueError):
    """The event stream passed one of the decoder's limits (`limit` names it).

    `events` holds the events that the same `SSEDecoder.feed` call completed before the
    limit was passed, in order, so nothing that arrived whole is lost. The stream
    cannot be trusted further: drop the connection, call `SSEDecoder.end_of_stream`
    and reconnect (or give up).
    """

    def __init__(self, message: str, limit: Limit, events: list[ServerSentEvent]) -> None:
        super().__init__(message)
        self.limit: Limit = limit
        self.events = events


def _join_block(pieces: list[str], blocks: int, separator: str) -> int:
    """Join the pieces that follow the first `blocks` items of `pieces` (blocks already
    joined) into one block; the new number of blocks. Joined with `separator`, the
    blocks make the same text as the pieces did."""
    pieces[blocks:] = [separator.join(pieces[blocks:])]
    return blocks + 1


class SSEDecoder:
    """The standard's incremental event-stream parser, with bounded memory.

    Feed it the bytes of a ``text/event-stream`` as they arrive, split anywhere;
    `feed` returns the events that those bytes completed, in order.

    - Line ends are CRLF, CR or LF; a CRLF split across two chunks is one line end.
    - One leading byte order mark (U+FEFF) is stripped; UTF-8 is decoded incrementally
      (a character split across chunks is fine; invalid bytes become U+FFFD).
    - Lines starting with ``:`` are comments and are ignored; a line without a colon is
      a field with an empty value; one space after the colon is stripped; unknown
      fields are ignored; an ``id`` containing NUL is ignored; ``retry`` is taken only
      when it is all ASCII digits.
    - A blank line dispatches: nothing if no ``data`` line came since the last one,
      otherwise an event whose `data` is the data lines joined with ``\\n``.

    A dispatched event has `event` None when the stream set no type (a browser
    delivers it as ``"message"``), `id` the last event ID in effect (carried over from
    earlier events; None while it is empty), `retry` the value of a valid ``retry``
    field in the same block (else None), and no comment. An event whose
    blank line has not arrived yet is never returned.

    Limits (in characters, after decoding): a line longer than `max_line` (comments and
    unknown fields included, the line end not counted), or an event whose data (its
    ``data`` lines joined with ``\\n``) would pass `max_event`, raises `SSEDecodeError`
    as soon as the excess arrives. After the error the decoder discards what it held
    of the stream and refuses more of it (`feed` raises `SSEDecodeError` again) until
    `end_of_stream`.

    Memory: between calls the decoder holds at most about `max_line` + `max_event`
    characters (a str stores 1, 2 or 4 bytes a character) and 16 KiB, however many
    lines or chunks they came in; `feed` adds at most about 128 KiB to that while it
    parses, whatever the chunk's size (it parses 2 KiB of it at a time), beside the
    events it returns.

    Reconnecting: when a connection ends (cleanly or not), call `end_of_stream`, then
    open the next one with a ``Last-Event-ID`` header of `last_event_id` (when it is
    not empty) after `retry` milliseconds (when the server set it), and feed the new
    body to the same decoder.
    """

    __slots__ = (
        "_data",
        "_data_blocks",
        "_data_size",
        "_decoder",
        "_event",
        "_failed",
        "_id_buffer",
        "_pending",
        "_pending_blocks",
        "_pending_size",
        "_skip_lf",
        "_started",
        "_this_retry",
        "last_event_id",
        "max_event",
        "max_line",
        "retry",
    )

    def __init__(
        self, *, max_line: int = DEFAULT_MAX_LINE, max_event: int = DEFAULT_MAX_EVENT
    ) -> None:
        """A decoder at the start of a stream. `max_line` and `max_event` must be
        positive ints (`TypeError` or `ValueError` otherwise)."""
        self.max_line = _check_limit("max_line", max_line)
        self.max_event = _check_limit("max_event", max_event)
        self.last_event_id: str = ""
        """The last event ID string, updated at each dispatch ("" until an id is sent).
        It outlives `end_of_stream`."""
        self.retry: int | None = None
        """The reconnection time (ms) from the latest valid ``retry`` field, if any.
        It outlives `end_of_stream`."""
        self._id_buffer = ""
        self._start_stream()

    def _start_stream(self) -> None:
        """Forget everything of the stream but the ids and the reconnection time."""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # The start of a line whose end has not come, in pieces (the first
        # `_pending_blocks` of them already joined blocks; see `_join_block`).
        self._pending: list[str] = []
        self._pending_blocks = 0
        self._pending_size = 0
        self._skip_lf = False
        self._started = False
        self._data: list[str] = []  # the event's data lines, as `_pending`
        self._data_blocks = 0
        self._data_size = -1  # the length of the data lines joined with "\n"
        self._event = ""
        self._this_retry: int | None = None
        self._failed: Limit | None = None

    def end_of_stream(self) -> None:
        """The connection ended: make the decoder ready for the next one.

        What the stream left unfinished is dropped (an event without its blank line, a
        partial line, a CR whose LF might have followed, half a UTF-8 character), and
        so is the ``id`` of that unfinished event, which never took effect. Kept:
        `last_event_id`, which stays in effect on the next connection until it sends
        an ``id`` of its own, and `retry`. The next `feed` starts a new stream (a byte
        order mark is stripped again) and is accepted even after an `SSEDecodeError`.
        """
        self._id_buffer = self.last_event_id
        self._start_stream()

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Parse `chunk`; return the events it completed (possibly none).

        Raises `SSEDecodeError` past `max_line` or `max_event` (see the class
        docstring), and again for every chunk after that until `end_of_stream`.
        """
        if self._failed is not None:
            raise SSEDecodeError(
                f"the event stream passed {self._failed}; call end_of_stream() before "
                "feeding a new connection",
                self._failed,
                [],
            )
        events: list[ServerSentEvent] = []
        for start in range(0, len(chunk), _SLICE):
            self._parse(self._decoder.decode(chunk[start : start + _SLICE]), events)
        return events

    def _parse(self, text: str, events: list[ServerSentEvent]) -> None:
        """Parse the next piece of the decoded stream; the events it completes go to
        `events`."""
        if not text:
            return
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        if "\n" not in text and "\r" not in text:
            self._pending_size += len(text)
            if self._pending_size > self.max_line:
                self._fail("max_line", events)
            self._pending.append(text)
            if len(self._pending) - self._pending_blocks >= _BLOCK:
                self._pending_blocks = _join_block(self._pending, self._pending_blocks, "")
            return
        if self._pending:
            self._pending.append(text)
            text = "".join(self._pending)
        lines = _lines(text)
        last = lines.pop()
        self._pending = [last] if last else []
        self._pending_blocks = 0
        self._pending_size = len(last)
        if text.endswith("\r"):
            # The CR ended a line; an LF at the start of the next piece is its pair.
            self._skip_lf = True
        max_line = self.max_line
        for line in lines:
            if not line:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            elif len(line) > max_line:
                self._fail("max_line", events)
            elif line[0] != ":" and self._field(line):
                self._fail("max_event", events)
        if len(last) > max_line:
            self._fail("max_line", events)

    def _fail(self, limit: Limit, events: list[ServerSentEvent]) -> None:
        self._start_stream()
        self._failed = limit
        size = self.max_line if limit == "max_line" else self.max_event
        what = "a line" if limit == "max_line" else "the data of one event"
        raise SSEDecodeError(
            f"the event stream sent {what} longer than {limit}={size} characters",
            limit,
            events,
        )

    def _field(self, line: str) -> bool:
        """Take one field line; True when it makes the event's data pass `max_event`."""
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data = self._data
            data.append(value)
            self._data_size += len(value) + 1
            if len(data) - self._data_blocks >= _BLOCK:
                self._data_blocks = _join_block(data, self._data_blocks, "\n")
            return self._data_size > self.max_event
        if name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            # More digits than int() takes (4300 by default) is absurd: ignored.
            with contextlib.suppress(ValueError):
                self.retry = self._this_retry = int(value)
        return False

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id_buffer
        event: ServerSentEvent | None = None
        if self._data:
            event = ServerSentEvent(
                data="\n".join(self._data),
                event=self._event or None,
                id=self.last_event_id or None,
                retry=self._this_retry,
            )
        self._this_retry = None
        self._data = []
        self._data_blocks = 0
        self._data_size = -1
        self._event = ""
        return event


def _check_limit(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value
