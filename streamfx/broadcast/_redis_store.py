"""What the Redis backend asks of Redis about streams, on its command connections.

Entry ids, entries as ``(id, stored event body)`` pairs, and the questions the backend
asks: a stream's counts (``XINFO STREAM``), whether an entry is
still there (what "history still covers this position" means on Redis 7.0, which
does not record what trimming removed), the entries after an id. Every method raises
redis-py's own errors; `unreachable` tells a lost connection from a refused command.

`raw_stream_replies` makes a client hand ``XRANGE`` and ``XREAD`` replies over as
hiredis parsed them (RESP2 lists) instead of through redis-py's callbacks, which build
a dict of fields per entry: a replay of 1,000 entries spent more time there than in
Redis. `entries` and `stream_entries` read those lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "FIELD",
    "StreamCounts",
    "StreamId",
    "StreamStore",
    "framed_entries",
    "id_before",
    "parse_id",
    "raw_stream_replies",
    "stream_entries",
    "unreachable",
]

FIELD: Final = b"e"
"""The one field of every entry: the event's encoded body."""
_ID: Final = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_MAX_PART: Final = 2**64 - 1

StreamId = tuple[int, int]
Entry = tuple[str, bytes]


def parse_id(text: str) -> StreamId | None:
    """``"<ms>-<seq>"`` (ASCII digits, each part below 2**64, as Redis takes them) as a
    pair of ints; None for anything else."""
    match = _ID.fullmatch(text)
    if match is None:
        return None
    milliseconds, sequence = int(match[1]), int(match[2])
    if milliseconds > _MAX_PART or sequence > _MAX_PART:
        return None
    return milliseconds, sequence


def parse_known(text: str) -> StreamId:
    """`parse_id` for an id that came from Redis."""
    parsed = parse_id(text)
    assert parsed is not None, text
    return parsed


def id_before(entry_id: str) -> str:
    """The greatest id below `entry_id` (which must not be ``0-0``)."""
    milliseconds, sequence = parse_known(entry_id)
    if sequence:
        return f"{milliseconds}-{sequence - 1}"
    return f"{milliseconds - 1}-{_MAX_PART}"


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` means Redis could not be reached (rather than refused a command)."""
    from redis.exceptions import ConnectionError, TimeoutError

    return isinstance(exc, ConnectionError | TimeoutError | OSError)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def raw_stream_replies(client: Redis) -> None:
    """Make `client` return ``XRANGE`` and ``XREAD`` replies unconverted (RESP2)."""
    for command in ("XRANGE", "XREAD"):
        client.set_response_callback(command, _unconverted)


def _unconverted(response: Any, **options: Any) -> Any:
    return response


def _body(fields: list[bytes]) -> bytes:
    """The value of `FIELD` in an entry's ``[field, value, ...]`` list (b"" if absent)."""
    if len(fields) == 2 and fields[0] == FIELD:
        return fields[1]
    for index in range(0, len(fields) - 1, 2):
        if fields[index] == FIELD:
            return fields[index + 1]
    return b""


def entries(reply: Any) -> list[Entry]:
    """An unconverted list of stream entries as ``(id, stored event body)`` pairs."""
    return [(entry_id.decode(), _body(fields)) for entry_id, fields in reply or ()]


def framed_entries(reply: Any) -> list[Entry]:
    """An unconverted list of stream entries as ``(id, frame)`` pairs, each frame the
    stored body followed by its id line and the blank line (what
    `streamfx.broadcast._frames.with_id` writes), in one pass over the reply."""
    return [
        (
            entry_id.decode(),
            (fields[1] if len(fields) == 2 and fields[0] == FIELD else _body(fields))
            + b"id: "
            + entry_id
            + b"\n\n",
        )
        for entry_id, fields in reply or ()
    ]


def stream_entries(reply: Any) -> list[tuple[str, list[Entry]]]:
    """An unconverted RESP2 ``XREAD`` reply as ``(stream key, (id, frame) pairs)``."""
    return [(text(key), framed_entries(found)) for key, found in reply or ()]


@dataclass(frozen=True, slots=True)
class StreamCounts:
    """What ``XINFO STREAM`` says of a stream (a missing one: ``0-0``, nothing added)."""

    last_id: str
    """The id of the newest entry ever added (``last-generated-id``)."""
    added: int | None
    """How many entries were ever added (``entries-added``; None before Redis 7.0)."""
    length: int
    first_id: str | None
    """The id of the oldest entry still in the stream (None: it is empty)."""

    @property
    def first_number(self) -> int | None:
        """The oldest entry's number in the order of adding (the first ever added is 1),
        when only trimming removed entries (the backend never deletes any other way)."""
        if self.added is None or self.first_id is None:
            return None
        return self.added - self.length + 1


class StreamStore:
    """The questions asked of Redis about one prefix's streams."""

    def __init__(self, commands: Redis, prefix: str) -> None:
        self.commands = commands
        self.prefix = prefix

    async def first_id(self, topic: str) -> str | None:
        first = entries(await self.commands.xrange(self.prefix + topic, "-", "+", count=1))
        return first[0][0] if first else None

    async def untrimmed(self, topic: str) -> bool:
        """Whether the stream holds every entry ever added to it (a missing one does)."""
        try:
            info: dict[str, Any] = await self.commands.xinfo_stream(self.prefix + topic)
        except Exception as exc:
            if "no such key" in str(exc).lower():
                return True
            raise
        return bool(info.get("entries-added", 0) == info.get("length", 0))

    async def counts(self, topic: str) -> StreamCounts:
        """The stream's `StreamCounts`, in one ``XINFO STREAM``."""
        try:
            info: dict[str, Any] = await self.commands.xinfo_stream(self.prefix + topic)
        except Exception as exc:
            if "no such key" in str(exc).lower():
                return StreamCounts("0-0", 0, 0, None)
            raise
        added = info.get("entries-added")
        first = info.get("first-entry")
        return StreamCounts(
            text(info.get("last-generated-id") or "0-0"),
            None if added is None else int(added),
            int(info.get("length", 0)),
            text(first[0]) if first else None,
        )

    async def still_there(self, topic: str, entry_id: str) -> bool:
        """Whether everything after `entry_id` is still in the stream: the entry itself
        is (``0-0``, the position before any entry: nothing was ever trimmed)."""
        if entry_id == "0-0":
            return await self.untrimmed(topic)
        key = self.prefix + topic
        return bool(await self.commands.xrange(key, entry_id, entry_id, count=1))

    async def after(self, topic: str, entry_id: str, upto: str) -> list[Entry]:
        """The entries after `entry_id`, up to and including `upto`."""
        return entries(await self.commands.xrange(self.prefix + topic, "(" + entry_id, upto))

    async def span(self, topic: str, entry_id: str, upto: str) -> list[Entry]:
        """The entries from `entry_id` to `upto`, both included, in one ``XRANGE``, as
        ``(id, frame)`` pairs (`framed_entries`)."""
        return framed_entries(await self.commands.xrange(self.prefix + topic, entry_id, upto))
