"""`RedisStreamsBackend`: topics shared by processes and machines on Redis Streams.

Install with ``pip install 'streamfx[redis]'`` (redis-py's asyncio client); Redis 6.2
or newer. Each topic is the stream ``<prefix><topic>``; a publish is one ``XADD``
(``MAXLEN ~ history``; plus ``EXPIRE ttl`` when `ttl` is set) whose entry id is the
event's SSE id and whose one field holds the encoded event, so every process writes
the same bytes without encoding it again.

Promises:

- **One reading connection per process** (named ``streamfx-reader``): a single
  blocking ``XREAD`` over every topic that has subscribers in this process, fanned out
  in memory to the topics' logs. When a topic is added, the ``XREAD`` is woken with
  ``CLIENT UNBLOCK`` from the command connection and issued again with the new set;
  no redis-py command on the reading connection is ever cancelled to do that. A
  publish reaches its own process by the same path as anyone else's, so nothing is
  delivered twice.
- **Resume**: a ``Last-Event-ID`` newer than this process's log is replayed with
  ``XRANGE`` from the stream. It is honoured only if that entry is still in the stream
  (Redis 7.0 does not record what trimming removed, so that is what can be checked;
  ``0-0``, the position of a stream that had no entry, is honoured while nothing was
  ever trimmed). Otherwise: one ``reset``.
- **Redis going away**: subscribers stay connected and keep their heartbeats; the
  reader reconnects with jittered backoff (50 ms doubling to 5 s) and resumes every
  topic from the last id it read. A topic whose last read entry is gone from the
  stream after that (Redis restarted without its data, or trimmed past it meanwhile)
  gets one ``reset`` in its log, then continues with what the stream holds.
  `publish` raises `BroadcastError` (the event was not stored) while Redis is
  unreachable; `healthy` is False from the reader's first failure until it is
  connected again, and each change is reported to the metrics hook.
- `stop` wakes the reader and waits for it to end (cancelling it only if Redis does
  not answer within two seconds), then closes both connections.

Not for Redis Cluster: the reader's ``XREAD`` names many streams, which need not
share a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from streamfx._core.util import cancel_and_wait
from streamfx.broadcast._backend import FETCH, WAIT, Located
from streamfx.broadcast._frames import reset_frame, with_id
from streamfx.broadcast._log import TopicLog
from streamfx.broadcast.errors import BroadcastError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStreamsBackend"]

logger = logging.getLogger("streamfx.broadcast.redis")

FIELD: Final = b"e"
READER_NAME: Final = "streamfx-reader"
BLOCK_MS: Final = 5000
READ_COUNT: Final = 1000
BACKOFF_MIN: Final = 0.05
BACKOFF_MAX: Final = 5.0
CONNECT_TIMEOUT: Final = 2.0
STOP_TIMEOUT: Final = 2.0
_ID: Final = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_MAX_PART: Final = 2**64 - 1

StreamId = tuple[int, int]


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


def _parse_known(text: str) -> StreamId:
    parsed = parse_id(text)
    assert parsed is not None, text
    return parsed


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
        self._count: Callable[[int], None] = lambda resets: None
        self._commands: Redis | None = None
        self._reader: Redis | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._unblock_task: asyncio.Task[None] | None = None
        self._logs: dict[str, TopicLog] = {}
        self._healthy = False
        self._stopping = False
        self._reader_id: int | None = None
        self._blocked = False
        self._generation = 0
        self._read_generation = 0
        self._topics_added = asyncio.Event()
        self._unblock_wanted = asyncio.Event()
        self._stopped = asyncio.Event()
        self._first_attempt = asyncio.Event()

    # -- what the hub calls --------------------------------------------------------

    def bind(
        self, capacity: int, on_health: Callable[[bool], None], on_resets: Callable[[int], None]
    ) -> None:
        if self._capacity:
            raise ValueError("a RedisStreamsBackend serves one Broadcast; make one per hub")
        self._capacity = capacity
        self._on_health = on_health
        self._count = on_resets

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def start(self) -> None:
        """Create the connections and start the reader; returns after its first
        connection attempt (`healthy` tells how it went; it keeps trying)."""
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "RedisStreamsBackend needs redis-py: pip install 'streamfx[redis]'"
            ) from exc
        common: dict[str, Any] = {
            "protocol": 2,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
        }
        self._commands = Redis.from_url(self.url, client_name="streamfx", **common)
        self._reader = Redis.from_url(
            self.url,
            client_name=READER_NAME,
            single_connection_client=True,
            socket_timeout=BLOCK_MS / 1000 + 5,
            **common,
        )
        loop = asyncio.get_running_loop()
        self._reader_task = loop.create_task(self._read_forever(), name="streamfx.redis reader")
        self._unblock_task = loop.create_task(
            self._unblock_forever(), name="streamfx.redis reader waker"
        )
        await self._first_attempt.wait()

    async def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        self._topics_added.set()
        self._unblock_wanted.set()
        reader = self._reader_task
        if reader is not None:
            if self._blocked and self._reader_id is not None and self._commands is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(STOP_TIMEOUT):
                        await self._commands.client_unblock(self._reader_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await asyncio.wait({reader})
        await cancel_and_wait(task for task in (reader, self._unblock_task) if task is not None)
        for client in (self._reader, self._commands):
            if client is not None:
                with contextlib.suppress(Exception):
                    await _close(client)
        self._set_health(False)

    async def publish(self, topic: str, body: bytes) -> str:
        commands = self._running()
        key = self.prefix + topic
        try:
            if self.ttl is None:
                entry_id = await commands.xadd(key, {FIELD: body}, maxlen=self.history)
            else:
                async with commands.pipeline(transaction=True) as pipe:
                    pipe.xadd(key, {FIELD: body}, maxlen=self.history)
                    pipe.pexpire(key, int(self.ttl * 1000))
                    entry_id, _ = await pipe.execute()
        except Exception as exc:
            raise BroadcastError(f"could not publish to {topic!r}: {exc}") from exc
        return _text(entry_id)

    def attach(self, topic: str) -> TopicLog:
        log = self._logs.get(topic)
        if log is None:
            log = self._logs[topic] = TopicLog(topic, self._capacity, named=True)
            self._generation += 1
            self._topics_added.set()
            self._unblock_wanted.set()
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
        base = _parse_known(log.base_id)
        if wanted < base or wanted > _parse_known(log.id_of(log.head)):
            return FETCH  # older than this process's log, or not read here yet
        number = log.find(wanted, _parse_known)
        if number is None:
            return Located(None, reason="unknown")
        return Located(number)

    async def fetch(self, log: TopicLog, position: str) -> Located | str:
        commands = self._running()
        wanted = _parse_known(position)
        key = self.prefix + log.topic
        try:
            if not await self._still_there(key, position):
                first = _entries(await commands.xrange(key, "-", "+", count=1))
                older = bool(first) and _parse_known(first[0][0]) > wanted
                return Located(None, reason="expired" if older else "unknown")
            located = self.locate(log, position)  # the log may have moved meanwhile
            if located != FETCH:
                return located
            if wanted > _parse_known(log.id_of(log.head)):
                return WAIT  # in the stream, not yet in this process's log
            upto = log.first - 1
            entries = _entries(await commands.xrange(key, "(" + position, log.id_of(upto)))
        except BroadcastError:
            raise
        except Exception as exc:
            if _unreachable(exc):
                raise BroadcastError(f"could not read {log.topic!r} from Redis: {exc}") from exc
            logger.warning("Redis refused to replay %r from %r: %s", log.topic, position, exc)
            return Located(None, reason="unknown")
        return Located(upto, replay=[(text, with_id(body, text)) for text, body in entries])

    # -- the reader ------------------------------------------------------------------

    async def _read_forever(self) -> None:
        backoff = BACKOFF_MIN
        connected = False
        while not self._stopping:
            try:
                if not connected:
                    await self._connect()
                    connected = True
                    backoff = BACKOFF_MIN
                await self._read_once()
            except Exception as exc:
                if self._stopping:
                    break
                if self._healthy:
                    logger.warning("Redis reader lost its connection: %s; reconnecting", exc)
                connected = False
                self._set_health(False)
                self._first_attempt.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff * (0.5 + random.random())):
                        await self._stopped.wait()
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _connect(self) -> None:
        """(Re)connect the reader, learn its client id, and check every topic's last
        read entry is still in its stream (else: a reset in that topic's log)."""
        reader = self._reader
        assert reader is not None
        self._reader_id = int(await reader.client_id())
        if not self._healthy:
            # After an outage, idle pooled connections are dead: drop them so that the
            # next publish connects afresh instead of failing on one of them.
            await self._running().connection_pool.disconnect(inuse_connections=False)
        for log in list(self._logs.values()):
            if log.ready:
                await self._check_continuity(log)
        self._set_health(True)
        self._first_attempt.set()

    async def _check_continuity(self, log: TopicLog) -> None:
        key = self.prefix + log.topic
        last = log.id_of(log.head)
        if await self._still_there(key, last):
            return
        commands = self._running()
        info = await self._stream_info(key)
        if info is None or info.get("entries-added") == info.get("length"):
            base = "0-0"  # a new stream: everything in it is after the loss
        else:
            first = _entries(await commands.xrange(key, "-", "+", count=1))
            base = first[0][0] if first else "0-0"
        logger.warning("history of topic %r was lost while Redis was away", log.topic)
        number = log.append(reset_frame(base, "lost"), base)
        log.reset_at = number
        self._count(log.subscribers)

    async def _read_once(self) -> None:
        reader = self._reader
        assert reader is not None
        self._topics_added.clear()
        self._read_generation = self._generation
        logs = dict(self._logs)
        for log in logs.values():
            if not log.ready:
                log.base_id = await self._last_id(self.prefix + log.topic)
                log.ready = True
                log.wake(True)
        if not logs:
            # Nothing to read: wait for a topic, asking Redis for the reader's id every
            # BLOCK_MS meanwhile, so that `healthy` stays true to the facts and the
            # connection is back soon after an outage.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BLOCK_MS / 1000):
                    await self._topics_added.wait()
            self._reader_id = int(await reader.client_id())
            return
        streams = {self.prefix + topic: log.id_of(log.head) for topic, log in logs.items()}
        self._blocked = True
        try:
            reply = await reader.xread(streams, count=READ_COUNT, block=BLOCK_MS)  # type: ignore[arg-type]
        finally:
            self._blocked = False
        prefix_length = len(self.prefix)
        for key, entries in _stream_entries(reply):
            topic = key[prefix_length:]
            follower = logs.get(topic)
            if follower is None or self._logs.get(topic) is not follower:
                continue  # nobody here follows it any more
            for text, body in entries:
                follower.append(with_id(body, text), text)

    async def _unblock_forever(self) -> None:
        """Wake the reader's XREAD whenever topics were added, until it re-reads them."""
        while not self._stopping:
            await self._unblock_wanted.wait()
            self._unblock_wanted.clear()
            delay = 0.001
            while not self._stopping and self._read_generation < self._generation:
                if self._blocked and self._reader_id is not None and self._healthy:
                    try:
                        if await self._running().client_unblock(self._reader_id):
                            break
                    except Exception:
                        break  # Redis is away: the reader re-reads every topic on reconnect
                await asyncio.sleep(delay)  # the XREAD is on its way: try again shortly
                delay = min(delay * 2, 0.1)

    # -- helpers ---------------------------------------------------------------------

    def _running(self) -> Redis:
        if self._commands is None or self._stopping:
            raise BroadcastError("the Redis backend is not running: use `async with hub:`")
        return self._commands

    def _set_health(self, healthy: bool) -> None:
        if healthy != self._healthy:
            self._healthy = healthy
            self._on_health(healthy)

    async def _last_id(self, key: str) -> str:
        last = _entries(await self._running().xrevrange(key, "+", "-", count=1))
        return last[0][0] if last else "0-0"

    async def _stream_info(self, key: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await self._running().xinfo_stream(key)
        except Exception as exc:
            if "no such key" in str(exc).lower():
                return None
            raise
        return info

    async def _still_there(self, key: str, entry_id: str) -> bool:
        """Whether everything after `entry_id` is still in the stream."""
        if entry_id == "0-0":
            info = await self._stream_info(key)
            return info is None or info.get("entries-added", 0) == info.get("length", 0)
        found = await self._running().xrange(key, entry_id, entry_id, count=1)
        return bool(found)


def _unreachable(exc: BaseException) -> bool:
    """Whether `exc` means Redis could not be reached (rather than refused a command)."""
    from redis.exceptions import ConnectionError, TimeoutError

    return isinstance(exc, ConnectionError | TimeoutError | OSError)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(reply: Any) -> list[tuple[str, bytes]]:
    """Stream entries from redis-py as ``(id, stored event body)`` pairs."""
    entries = []
    for entry_id, fields in reply or ():
        entries.append((_text(entry_id), (fields or {}).get(FIELD, b"")))
    return entries


def _stream_entries(reply: Any) -> list[tuple[str, list[tuple[str, bytes]]]]:
    """XREAD's reply as ``(stream key, entries)`` pairs, whatever shape redis-py gave."""
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    result = []
    for key, entries in pairs:
        if (
            entries
            and isinstance(entries[0], list)
            and entries[0]
            and isinstance(entries[0][0], list | tuple)
        ):
            entries = entries[0]  # RESP3 wraps each stream's entries once more
        result.append((_text(key), _entries(entries)))
    return result


async def _close(client: Redis) -> None:
    close: Callable[[], Awaitable[None]] = getattr(client, "aclose", None) or client.close
    await close()
