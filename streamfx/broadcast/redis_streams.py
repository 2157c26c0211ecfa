"""`RedisStreamsBackend`: topics shared by processes and machines on Redis Streams.

Install with ``pip install 'streamfx[redis]'`` (redis-py's asyncio client, with hiredis,
its C reply parser: a replay of 1,000 entries parses several times faster); Redis 6.2
or newer. Each topic is the stream ``<prefix><topic>``; a publish is one ``XADD``
(``MAXLEN ~ history``; with `ttl`, in one transaction with ``PEXPIRE``) whose entry id is the
event's SSE id and whose one field holds the encoded event, so every process writes
the same bytes without encoding it again. Publishes made while one is on its way go
together in one pipeline, in call order (see `Publisher`).

Promises:

- **One reading connection per process** (named ``streamfx-reader``): a single
  blocking ``XREAD`` over every topic that has subscribers in this process, fanned out
  in memory to the topics' logs. When a topic is added, the ``XREAD`` is woken with
  ``CLIENT UNBLOCK`` from the command connection and issued again with the new set;
  no redis-py command on the reading connection is ever cancelled to do that. A
  publish reaches its own process by the same path as anyone else's, so nothing is
  delivered twice.
- **Resume**: a ``Last-Event-ID`` older than this process's log is replayed with one
  ``XRANGE`` from that entry on (its reply framed in one pass, no dict per entry).
  It is honoured only if that entry is still in the stream
  (Redis 7.0 does not record what trimming removed, so that is what can be checked;
  ``0-0``, the position of a stream that had no entry, is honoured while nothing was
  ever trimmed). Otherwise: one ``reset``. Entry ids are per stream: an id is checked
  against the topic's own stream only.
- **Redis going away**: subscribers stay connected and keep their heartbeats; the
  reader (`StreamReader`) reconnects with jittered backoff and resumes every topic from
  the last id it read. A topic whose last read entry is gone from the stream after
  that (Redis restarted without its data, or trimmed past it meanwhile) gets one
  ``reset``, then continues with what the stream holds. `publish` raises
  `BroadcastError` (the event was not stored) while Redis is unreachable. `healthy`
  is False from the reader's first failure until it is connected again (it checks in
  every five seconds even with no topic to read); each change goes to the metrics hook.
- **Entries trimmed before they were read** (more arrived on a stream between two
  ``XREAD``s than `history` keeps): the topic's local subscribers get one ``reset``
  (reason ``lost``), then what is left and the live stream (see `StreamReader`).
- `stop` stops the reader (see `StreamReader`), then closes the connections.

Not for Redis Cluster: the reader's ``XREAD`` names many streams, which need not
share a slot.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from streamfx.broadcast._backend import FETCH, WAIT, Located
from streamfx.broadcast._frames import with_id
from streamfx.broadcast._log import TopicLog
from streamfx.broadcast._redis_publisher import Publisher
from streamfx.broadcast._redis_reader import StreamReader
from streamfx.broadcast._redis_store import (
    StreamStore,
    parse_id,
    parse_known,
    raw_stream_replies,
    unreachable,
)
from streamfx.broadcast._redis_wire import WireConnection
from streamfx.broadcast.errors import BroadcastError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStreamsBackend", "parse_id"]

logger = logging.getLogger("streamfx.broadcast.redis")

READER_NAME: Final = "streamfx-reader"
PUBLISHER_NAME: Final = "streamfx-publisher"
CONNECT_TIMEOUT: Final = 2.0


class RedisStreamsBackend:
    """Topics as Redis streams; see the module docstring.

    `url`: a ``redis://`` URL. `prefix`: prepended to each topic to make its key.
    `history`: entries kept per stream (``MAXLEN ~``, so a few more may stay).
    `ttl`: seconds after its last publish that a stream expires (None: never).
    One backend serves one `Broadcast`.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "streamfx:",
        history: int = 10_000,
        ttl: float | None = None,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise TypeError("url must be a non-empty str such as 'redis://localhost:6379/0'")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be an int of at least 1, got {history!r}")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
            raise TypeError(f"ttl must be a number of seconds or None, not {ttl!r}")
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        self.url = url
        self.prefix = prefix
        self.history = history
        self.ttl = ttl
        self._capacity = 0
        self._on_health: Callable[[bool], None] = lambda healthy: None
        self._on_resets: Callable[[int], None] = lambda resets: None
        self._logs: dict[str, TopicLog] = {}
        self._store: StreamStore | None = None
        self._reader: StreamReader | None = None
        self._publisher: Publisher | None = None
        self._clients: list[Redis] = []

    def bind(
        self, capacity: int, on_health: Callable[[bool], None], on_resets: Callable[[int], None]
    ) -> None:
        if self._capacity:
            raise ValueError("a RedisStreamsBackend serves one Broadcast; make one per hub")
        self._capacity = capacity
        self._on_health = on_health
        self._on_resets = on_resets

    @property
    def healthy(self) -> bool:
        return self._reader is not None and self._reader.healthy

    async def start(self) -> None:
        """Create the connections and start the reader; returns after its first
        connection attempt (`healthy` tells how it went; it keeps trying)."""
        try:
            import hiredis  # noqa: F401  (the reading connection's parser)
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "RedisStreamsBackend needs redis-py and hiredis: pip install 'streamfx[redis]'"
            ) from exc
        common: dict[str, Any] = {
            "protocol": 2,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),  # a publish is tried once: no hidden duplicates
        }
        commands = Redis.from_url(self.url, client_name="streamfx", **common)
        raw_stream_replies(commands)
        self._clients = [commands]
        self._store = StreamStore(commands, self.prefix)
        self._publisher = Publisher(self._connect_publisher, self.history, self.ttl)
        self._reader = StreamReader(
            self._connect_reader,
            self._store,
            self.history,
            self._logs,
            self._on_health,
            self._on_resets,
        )
        await self._reader.start()

    async def _connect_reader(self) -> WireConnection:
        return await WireConnection.open(self.url, READER_NAME, CONNECT_TIMEOUT)

    async def _connect_publisher(self) -> WireConnection:
        return await WireConnection.open(self.url, PUBLISHER_NAME, CONNECT_TIMEOUT)

    async def stop(self) -> None:
        self._store = None
        if self._publisher is not None:
            await self._publisher.stop()
        if self._reader is not None:
            await self._reader.stop()
        for client in self._clients:
            with contextlib.suppress(Exception):
                await _close(client)
        self._clients = []

    async def publish(self, topic: str, body: bytes) -> str:
        self._running()
        assert self._publisher is not None
        try:
            return await self._publisher.publish(self.prefix + topic, body)
        except Exception as exc:
            raise BroadcastError(f"could not publish to {topic!r}: {exc}") from exc

    def attach(self, topic: str) -> TopicLog:
        self._running()  # refuse before start and after stop: nothing would feed the log
        log = self._logs.get(topic)
        if log is None:
            log = self._logs[topic] = TopicLog(topic, self._capacity, named=True)
            assert self._reader is not None
            self._reader.topic_added()
        log.subscribers += 1
        return log

    def detach(self, log: TopicLog) -> None:
        log.subscribers -= 1
        if not log.subscribers and self._logs.get(log.topic) is log:
            del self._logs[log.topic]  # the reader drops the stream at its next XREAD

    def position(self, log: TopicLog, number: int) -> str:
        return log.id_of(number)

    def locate(self, log: TopicLog, position: str) -> Located | str:
        wanted = parse_id(position)
        if wanted is None:
            return Located(None, reason="unknown")
        if not log.ready:
            return WAIT
        if wanted < parse_known(log.base_id) or wanted > parse_known(log.id_of(log.head)):
            return FETCH  # older than this process's log, or not read here yet
        number = log.find(wanted, parse_known)
        if number is None:
            return Located(None, reason="unknown")
        return Located(number)

    async def fetch(self, log: TopicLog, position: str) -> Located | str:
        store = self._running()
        wanted = parse_known(position)
        try:
            if position != "0-0" and wanted < parse_known(log.base_id):
                # Older than the log: one XRANGE from the entry itself; finding it first
                # is what honours the id (see `StreamStore.still_there`).
                upto = log.first - 1
                found = await store.span(log.topic, position, log.id_of(upto))
                if found and parse_known(found[0][0]) == wanted:
                    return Located(upto, replay=found[1:])
            if not await store.still_there(log.topic, position):
                first = await store.first_id(log.topic)
                older = first is not None and parse_known(first) > wanted
                return Located(None, reason="expired" if older else "unknown")
            located = self.locate(log, position)  # the log may have moved meanwhile
            if located != FETCH:
                return located
            if wanted > parse_known(log.id_of(log.head)):
                return WAIT  # in the stream, not yet in this process's log
            upto = log.first - 1
            entries = await store.after(log.topic, position, log.id_of(upto))
        except Exception as exc:
            if unreachable(exc):
                raise BroadcastError(f"could not read {log.topic!r} from Redis: {exc}") from exc
            logger.warning("Redis refused to replay %r from %r: %s", log.topic, position, exc)
            return Located(None, reason="unknown")
        return Located(upto, replay=_framed(entries))

    def _running(self) -> StreamStore:
        if self._store is None:
            raise BroadcastError("the Redis backend is not running: use `async with hub:`")
        return self._store


def _framed(entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return [(entry_id, with_id(body, entry_id)) for entry_id, body in entries]


async def _close(client: Redis) -> None:
    close: Callable[[], Awaitable[None]] = getattr(client, "aclose", None) or client.close
    await close()
