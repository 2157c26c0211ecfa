"""Server-Sent Events on the wire, parsing: `SSEDecoder`.

It follows the WHATWG HTML standard, section "Server-sent events" (9.2.5 "Parsing an
event stream" and 9.2.6 "Interpreting an event stream").
"""

from __future__ import annotations

import codecs
import contextlib

from streamfx._sse.event import ServerSentEvent, _lines

__all__ = ["SSEDecoder"]


class SSEDecoder:
    """The standard's incremental event-stream parser.

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
    """

    __slots__ = (
        "_data",
        "_decoder",
        "_event",
        "_has_data",
        "_id_buffer",
        "_pending",
        "_skip_lf",
        "_started",
        "_this_retry",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        self.last_event_id: str = ""
        """The last event ID string, updated at each dispatch ("" until an id is sent)."""
        self.retry: int | None = None
        """The reconnection time (ms) from the latest valid ``retry`` field, if any."""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[str] = []  # the start of a line whose end has not come
        self._skip_lf = False
        self._started = False
        self._data: list[str] = []
        self._has_data = False
        self._event = ""
        self._id_buffer = ""
        self._this_retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Parse `chunk`; return the events it completed (possibly none)."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        if "\n" not in text and "\r" not in text:
            self._pending.append(text)
            return []
        if self._pending:
            self._pending.append(text)
            text = "".join(self._pending)
        lines = _lines(text)
        self._pending = [lines.pop()]
        if text.endswith("\r"):
            # The CR ended a line; an LF at the start of the next chunk is its pair.
            self._skip_lf = True
        events: list[ServerSentEvent] = []
        for line in lines:
            if not line:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            elif line[0] != ":":
                self._field(line)
        return events

    def _field(self, line: str) -> None:
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            # More digits than int() takes (4300 by default) is absurd: ignored.
            with contextlib.suppress(ValueError):
                self.retry = self._this_retry = int(value)

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id_buffer
        event: ServerSentEvent | None = None
        if self._has_data:
            event = ServerSentEvent(
                data="\n".join(self._data),
                event=self._event or None,
                id=self.last_event_id or None,
                retry=self._this_retry,
            )
        self._this_retry = None
        self._data = []
        self._has_data = False
        self._event = ""
        return event
