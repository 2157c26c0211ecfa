"""`StreamReader`: the one connection per process that reads every followed topic.

The connection is a `WireConnection` (RESP2 over asyncio streams with hiredis; see
there why not redis-py's client for this one), opened again after every failure.

A single blocking ``XREAD`` names every topic that has a log in this process (the
backend adds and drops logs as subscribers come and go), and each entry it returns is
appended, as a frame, to its topic's log. New topics get their starting id (the
stream's last id) before they are read, so nothing published after a subscriber
arrived is missed.

Promises:

- When a topic is added, the blocked ``XREAD`` is woken with ``CLIENT UNBLOCK`` sent
  on a command connection (retried briefly while the ``XREAD`` is still on its way) and
  issued again with the new set. No command on the reading connection is cancelled.
- Any error on the reading connection makes the reader unhealthy; it reconnects with
  jittered backoff (50 ms doubling to 5 s) and resumes every topic from the last id it
  appended. A topic whose last entry is no longer in its stream then gets one
  ``reset`` frame in its log (reason ``lost``), naming where it continues: ``0-0`` when
  the stream holds everything ever added to it (it was recreated), else its oldest
  entry. Idle pooled command connections are dropped when it is back.
- **Trimmed before it was read**: when more entries arrive on a stream between two
  ``XREAD``s than the stream keeps (``MAXLEN ~ history``), the ones trimmed first are
  gone. The topic's log then gets one ``reset`` frame (reason ``lost``) before the
  entries that are left, exactly as after a wiped backend, and the live stream goes
  on. Detecting that costs a round trip (``XINFO STREAM``) only for a reply of at least
  ``min(history, READ_COUNT)`` entries for a topic. Why a shorter reply of ``n``
  entries lost nothing: it was not cut by ``COUNT``, so it is every entry after the
  last one read, ``L``. If the stream held only those ``n`` it was never trimmed:
  ``MAXLEN ~ history`` never leaves fewer than `history` entries and ``n < history``.
  Else it still held an entry not after ``L``, and trimming removes the oldest entries
  first, so nothing after ``L`` was trimmed. (This assumes every process on the
  prefix uses the same `history` and nothing else trims or deletes entries.) For a
  long reply, ``entries-added - length`` (Redis 7.0) numbers the stream's oldest entry
  in the order of adding; the reader counts the entries it reads from the number it
  started with, so it knows whether anything came between ``L`` and the reply. Before
  Redis 7.0 it falls back to asking whether ``L`` is still in the stream (which may
  reset when nothing was lost, never the other way round).
- After a reply it lets the loop run once before the next ``XREAD``, so that the
  subscribers it woke write first (Redis keeps what arrives meanwhile for that read).
- With no topic to read it asks Redis for its client id every `BLOCK_MS`, so health
  follows Redis even when nobody subscribes here.
- `stop` wakes the reader and waits for it (cancelling only after `STOP_TIMEOUT`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Final

from streamfx._core.util import cancel_and_wait
from streamfx.broadcast._frames import reset_frame
from streamfx.broadcast._log import TopicLog
from streamfx.broadcast._redis_store import (
    Entry,
    StreamStore,
    id_before,
    parse_known,
    stream_entries,
)
from streamfx.broadcast._redis_wire import WireConnection

__all__ = ["BLOCK_MS", "StreamReader"]

logger = logging.getLogger("streamfx.broadcast.redis")

BLOCK_MS: Final = 5000
READ_COUNT: Final = 1000
BACKOFF_MIN: Final = 0.05
BACKOFF_MAX: Final = 5.0
STOP_TIMEOUT: Final = 2.0
ANSWER_TIMEOUT: Final = 5.0
"""How long past its ``BLOCK`` a command may go unanswered before the connection is
taken for dead."""


class StreamReader:
    """Feeds `logs` (topic -> log, shared with the backend) from Redis; see above."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[WireConnection]],
        store: StreamStore,
        history: int,
        logs: dict[str, TopicLog],
        on_health: Callable[[bool], None],
        on_resets: Callable[[int], None],
    ) -> None:
        self.connect = connect
        self._wire: WireConnection | None = None
        self.store = store
        self.history = history
        self.logs = logs
        self._numbers: dict[str, int | None] = {}
        """Per topic: the number (in the order of adding) of its log's newest entry in
        its stream; None when Redis does not tell (before 7.0)."""
        self.on_health = on_health
        self.on_resets = on_resets
        self.healthy = False
        self._stopping = False
        self._client_id: int | None = None
        self._blocked = False
        self._generation = 0
        self._read_generation = 0
        self._topics_added = asyncio.Event()
        self._unblock_wanted = asyncio.Event()
        self._stopped = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start reading; return after the first connection attempt, whatever it gave."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_forever(), name="streamfx.redis reader"),
            loop.create_task(self._unblock_forever(), name="streamfx.redis reader waker"),
        ]
        await self._first_attempt.wait()

    async def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        self._topics_added.set()
        self._unblock_wanted.set()
        if self._tasks:
            if self._blocked and self._client_id is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(STOP_TIMEOUT):
                        await self.store.commands.client_unblock(self._client_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await asyncio.wait({self._tasks[0]})
            await cancel_and_wait(self._tasks)
        if self._wire is not None:
            self._wire.close()
            self._wire = None
        self._set_health(False)

    def topic_added(self) -> None:
        """A log was added to `logs`: read it too, from now on."""
        self._generation += 1
        self._topics_added.set()
        self._unblock_wanted.set()

    # -- reading ---------------------------------------------------------------------

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
                if self.healthy:
                    logger.warning("Redis reader lost its connection: %s; reconnecting", exc)
                connected = False
                self._set_health(False)
                self._first_attempt.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff * (0.5 + random.random())):
                        await self._stopped.wait()
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _connect(self) -> None:
        if self._wire is not None:
            self._wire.close()
        self._wire = None
        self._wire = await self.connect()
        self._client_id = int(await self._call("CLIENT", "ID"))
        if not self.healthy:
            # After an outage the idle pooled connections are dead: drop them so that the
            # next publish connects afresh instead of failing on one of them.
            await self.store.commands.connection_pool.disconnect(inuse_connections=False)
        for log in list(self.logs.values()):
            if log.ready:
                await self._check_continuity(log)
        self._set_health(True)
        self._first_attempt.set()

    async def _check_continuity(self, log: TopicLog) -> None:
        """After a reconnect: a reset in `log` if its last entry left the stream."""
        if await self.store.still_there(log.topic, log.id_of(log.head)):
            return
        counts = await self.store.counts(log.topic)
        number: int | None
        if counts.added == counts.length:
            base, number = "0-0", 0  # a new stream: everything in it came after the loss
        else:
            base, number = counts.first_id or "0-0", counts.first_number
        logger.warning("history of topic %r was lost while Redis was away", log.topic)
        self._reset(log, base)
        self._numbers[log.topic] = number

    def _reset(self, log: TopicLog, base: str) -> None:
        """Record lost history in `log`; it continues after `base`."""
        log.reset_at = log.append(reset_frame(base, "lost"), base)
        self.on_resets(log.subscribers)

    async def _read_once(self) -> None:
        self._topics_added.clear()
        self._read_generation = self._generation
        logs = dict(self.logs)
        if len(self._numbers) > len(logs):  # forget topics nobody follows any more
            self._numbers = {t: n for t, n in self._numbers.items() if t in logs}
        for log in logs.values():
            if not log.ready:
                counts = await self.store.counts(log.topic)
                log.base_id = counts.last_id
                self._numbers[log.topic] = counts.added
                log.ready = True
                log.wake(True)
        if not logs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BLOCK_MS / 1000):
                    await self._topics_added.wait()
            self._client_id = int(await self._call("CLIENT", "ID"))
            return
        prefix = self.store.prefix
        keys = [prefix + topic for topic in logs]
        after = [log.id_of(log.head) for log in logs.values()]
        self._blocked = True
        try:
            reply = await self._call(
                "XREAD", "COUNT", READ_COUNT, "BLOCK", BLOCK_MS, "STREAMS", *keys, *after
            )
        finally:
            self._blocked = False
        for key, entries in stream_entries(reply):
            topic = key[len(prefix) :]
            follower = logs.get(topic)
            if follower is None or self.logs.get(topic) is not follower:
                continue  # nobody here follows it any more
            if entries and len(entries) >= min(self.history, READ_COUNT):
                if await self._lost_before(follower, entries):
                    logger.warning("entries of topic %r were trimmed before they were read", topic)
                    self._reset(follower, id_before(entries[0][0]))
            else:
                number = self._numbers.get(topic)
                self._numbers[topic] = None if number is None else number + len(entries)
            for entry_id, frame in entries:
                follower.append(frame, entry_id)
        if reply:
            # The subscribers just woken write their frames before the next XREAD is
            # built and sent: that is on the way of every delivery, this is not.
            await asyncio.sleep(0)

    async def _call(self, *args: str | int) -> Any:
        """One command on the reading connection (it is closed if that fails)."""
        if self._wire is None:
            from redis.exceptions import ConnectionError as Unreachable

            raise Unreachable("the reading connection is closed")
        return await self._wire.call(*args, within=BLOCK_MS / 1000 + ANSWER_TIMEOUT)

    async def _lost_before(self, log: TopicLog, entries: list[Entry]) -> bool:
        """Whether entries added between `log`'s newest one and `entries` (one XREAD
        reply: consecutive entries of the stream) were trimmed before they were read;
        brings the topic's number up to the last of `entries` either way."""
        topic = log.topic
        last_read = log.id_of(log.head)
        expected = self._numbers.get(topic)
        counts = await self.store.counts(topic)
        first_number = counts.first_number
        if expected is None or first_number is None or counts.first_id is None:
            # Before Redis 7.0, or the stream went away since: all we can ask is whether
            # the last entry read is still there.
            self._numbers[topic] = None
            return not await self.store.still_there(topic, last_read)
        expected += len(entries)  # the last entry's number if nothing came in between
        oldest = parse_known(counts.first_id)
        ids = [parse_known(entry_id) for entry_id, _ in entries]
        if oldest < ids[0]:
            actual = expected  # an entry before the reply is still there: nothing lost
        elif oldest <= ids[-1]:
            actual = first_number + len(ids) - 1 - bisect.bisect_left(ids, oldest)
        else:  # the whole reply was trimmed since: it ends before the oldest entry
            actual = max(expected, first_number - 1)
        self._numbers[topic] = actual
        return actual > expected

    async def _unblock_forever(self) -> None:
        """Wake the reader's XREAD whenever topics were added, until it re-reads them."""
        while not self._stopping:
            await self._unblock_wanted.wait()
            self._unblock_wanted.clear()
            delay = 0.001
            while not self._stopping and self._read_generation < self._generation:
                if self._blocked and self._client_id is not None and self.healthy:
                    try:
                        if await self.store.commands.client_unblock(self._client_id):
                            break
                    except Exception:
                        break  # Redis is away: the reader re-reads every topic on reconnect
                await asyncio.sleep(delay)  # the XREAD is on its way: try again shortly
                delay = min(delay * 2, 0.1)

    def _set_health(self, healthy: bool) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            self.on_health(healthy)
