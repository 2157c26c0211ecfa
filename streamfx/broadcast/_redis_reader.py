"""`StreamReader`: the one connection per process that reads every followed topic.

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
- With no topic to read it asks Redis for its client id every `BLOCK_MS`, so health
  follows Redis even when nobody subscribes here.
- `stop` wakes the reader and waits for it (cancelling only after `STOP_TIMEOUT`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from streamfx._core.util import cancel_and_wait
from streamfx.broadcast._frames import reset_frame, with_id
from streamfx.broadcast._log import TopicLog
from streamfx.broadcast._redis_store import StreamStore, stream_entries

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["BLOCK_MS", "StreamReader"]

logger = logging.getLogger("streamfx.broadcast.redis")

BLOCK_MS: Final = 5000
READ_COUNT: Final = 1000
BACKOFF_MIN: Final = 0.05
BACKOFF_MAX: Final = 5.0
STOP_TIMEOUT: Final = 2.0


class StreamReader:
    """Feeds `logs` (topic -> log, shared with the backend) from Redis; see above."""

    def __init__(
        self,
        connection: Redis,
        store: StreamStore,
        logs: dict[str, TopicLog],
        on_health: Callable[[bool], None],
        on_resets: Callable[[int], None],
    ) -> None:
        self.connection = connection
        self.store = store
        self.logs = logs
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
        self._client_id = int(await self.connection.client_id())
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
        if await self.store.untrimmed(log.topic):
            base = "0-0"  # a new stream: everything in it came after the loss
        else:
            base = await self.store.first_id(log.topic) or "0-0"
        logger.warning("history of topic %r was lost while Redis was away", log.topic)
        log.reset_at = log.append(reset_frame(base, "lost"), base)
        self.on_resets(log.subscribers)

    async def _read_once(self) -> None:
        self._topics_added.clear()
        self._read_generation = self._generation
        logs = dict(self.logs)
        for log in logs.values():
            if not log.ready:
                log.base_id = await self.store.last_id(log.topic)
                log.ready = True
                log.wake(True)
        if not logs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BLOCK_MS / 1000):
                    await self._topics_added.wait()
            self._client_id = int(await self.connection.client_id())
            return
        prefix = self.store.prefix
        streams = {prefix + topic: log.id_of(log.head) for topic, log in logs.items()}
        self._blocked = True
        try:
            reply = await self.connection.xread(streams, count=READ_COUNT, block=BLOCK_MS)  # type: ignore[arg-type]
        finally:
            self._blocked = False
        for key, entries in stream_entries(reply):
            topic = key[len(prefix) :]
            follower = logs.get(topic)
            if follower is None or self.logs.get(topic) is not follower:
                continue  # nobody here follows it any more
            for entry_id, body in entries:
                follower.append(with_id(body, entry_id), entry_id)

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
