"""`WireConnection`: a connection to Redis, RESP2 over asyncio streams, parsed and
packed by hiredis: the reader's, and the publisher's.

Why not redis-py here (the backend's other connections are redis-py's): the reader
issues one ``XREAD`` per reply, so at a thousand events a second with one entry per
reply its command path runs a thousand times a second in every process. Measured on
the 2-core bench machine (one XREAD loop in a process, an event every millisecond from
another), redis-py's asyncio client spent 238 µs of CPU per event, its connection
object alone 178 µs, and these few lines over the same hiredis parser 92 µs. With four
workers that is more than half a core given back to the subscribers. The connection
does only what the reader needs: connect as the URL says (redis-py's `parse_url`:
host and port or a unix socket, ``rediss://`` with TLS, user, password, db), name
itself, send one command and read its reply.

Promises:

- `call` sends one command and returns its reply as hiredis parsed it (bytes, ints,
  lists, None); an error reply raises redis-py's `ResponseError`. `pipeline` sends
  several in one write and returns their replies, an error reply as a
  `ResponseError` in its place.
- A connection that fails, closes, or does not answer `within` its seconds raises
  redis-py's `ConnectionError` or `TimeoutError` (so `unreachable` tells them apart
  from refused commands) and is closed: the reader opens a new one.
- Cancelled in the middle of a command, the connection is closed (a reply may be on
  its way; nothing else could read it correctly).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

__all__ = ["WireConnection"]

READ_SIZE = 1 << 16


class WireConnection:
    """One RESP2 connection to Redis; see the module docstring."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import hiredis

        self._stream = reader
        self._writer = writer
        self._parser = hiredis.Reader()
        self._pack = hiredis.pack_command

    @classmethod
    async def open(cls, url: str, name: str, within: float) -> WireConnection:
        """Connect to the Redis `url`, authenticate, select its db, set the client name."""
        from redis.asyncio.connection import SSLConnection, parse_url
        from redis.exceptions import ConnectionError as Unreachable
        from redis.exceptions import TimeoutError as NoAnswer

        options = parse_url(url)
        try:
            async with asyncio.timeout(within):
                if "path" in options:
                    reader, writer = await asyncio.open_unix_connection(options["path"])
                else:
                    tls = None
                    if options.get("connection_class") is SSLConnection:
                        tls = ssl.create_default_context()
                        if str(options.get("ssl_cert_reqs", "required")).lower() == "none":
                            tls.check_hostname = False
                            tls.verify_mode = ssl.CERT_NONE
                    host, port = options.get("host", "localhost"), options.get("port", 6379)
                    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        except TimeoutError as exc:
            raise NoAnswer(f"connecting to Redis timed out after {within} s") from exc
        except OSError as exc:
            raise Unreachable(f"could not connect to Redis: {exc}") from exc
        connection = cls(reader, writer)
        try:
            password = options.get("password")
            if password is not None:
                user = options.get("username")
                await connection.call("AUTH", *((user,) if user else ()), password, within=within)
            if options.get("db"):
                await connection.call("SELECT", options["db"], within=within)
            await connection.call("CLIENT", "SETNAME", name, within=within)
        except BaseException:
            connection.close()
            raise
        return connection

    async def call(self, *args: Any, within: float) -> Any:
        """Send one command; return its reply (see the module docstring)."""
        from redis.exceptions import ResponseError

        (reply,) = await self._exchange(self._pack(args), 1, within)
        if isinstance(reply, Exception):
            raise ResponseError(str(reply))
        return reply

    async def pipeline(self, commands: list[tuple[Any, ...]], *, within: float) -> list[Any]:
        """Send `commands` in one write; return one reply per command, an error reply
        as a `ResponseError` in its place (also inside an ``EXEC`` reply)."""
        packed = b"".join(self._pack(command) for command in commands)
        return [_refused(reply) for reply in await self._exchange(packed, len(commands), within)]

    async def _exchange(self, packed: bytes, count: int, within: float) -> list[Any]:
        """Write `packed`; return the next `count` replies as hiredis parsed them."""
        from redis.exceptions import ConnectionError as Unreachable
        from redis.exceptions import TimeoutError as NoAnswer

        parser = self._parser
        replies: list[Any] = []
        try:
            self._writer.write(packed)
            async with asyncio.timeout(within):
                while len(replies) < count:
                    reply = parser.gets()
                    if reply is not False:
                        replies.append(reply)
                        continue
                    data = await self._stream.read(READ_SIZE)
                    if not data:
                        raise Unreachable("Redis closed the connection")
                    parser.feed(data)
        except TimeoutError as exc:
            self.close()
            raise NoAnswer(f"Redis did not answer within {within} s") from exc
        except OSError as exc:
            self.close()
            raise Unreachable(f"the connection to Redis failed: {exc}") from exc
        except BaseException:
            self.close()
            raise
        return replies

    @property
    def closed(self) -> bool:
        """Whether the connection was closed, by this side or by Redis."""
        return self._writer.is_closing() or self._stream.at_eof()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()


def _refused(reply: Any) -> Any:
    """`reply` with hiredis's error objects (also inside a list) as `ResponseError`s."""
    from redis.exceptions import ResponseError

    if isinstance(reply, Exception):
        return ResponseError(str(reply))
    if isinstance(reply, list):
        return [_refused(item) for item in reply]
    return reply
