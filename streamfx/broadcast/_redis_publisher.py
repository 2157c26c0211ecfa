"""`Publisher`: a process's ``XADD``s, in call order; those that arrive while a write is
in flight leave together, pipelined, in one round trip.

A publish is ``XADD <key> MAXLEN ~ history * e <body>`` (with `ttl`, followed by
``PEXPIRE`` inside ``MULTI``/``EXEC``). Many request handlers publishing at once (a chat
room, a busy job queue) would otherwise each wait for their own round trip, or each
take a pooled connection and race one another; here the first publish writes at once
and the next ones queue behind it until its reply comes back.

Promises:

- **Order**: entries are added in the order `publish` was called in this process
  (one writer, one batch at a time, each batch in call order), so a topic's ids
  increase in that order.
- **One round trip per batch**: a publish with nothing in flight is one ``XADD``;
  the publishes that arrived meanwhile go in one pipeline when it returns.
- **Each publish has its own outcome**: its entry id, or the error its command got
  (a refused command fails only that publish; a lost connection fails the batch it
  was in). The caller wraps that error (`BroadcastError`).
- **Cancellation**: a caller cancelled while it waits does not cancel the write (the
  event may still be stored, as when a reply is lost); no redis-py command is
  cancelled mid-flight except by `stop`, after `STOP_TIMEOUT`.
- The writer is a task only while there is something to write; `stop` waits for it
  (bounded), and publishes still waiting then fail with `BroadcastError`.
- Its connection is a `WireConnection` of its own (cheaper per publish than redis-py's
  pooled client, and one connection keeps the order); one that failed or that Redis
  closed is opened again for the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

from streamfx._core.util import cancel_and_wait
from streamfx.broadcast._redis_store import FIELD, text
from streamfx.broadcast._redis_wire import WireConnection
from streamfx.broadcast.errors import BroadcastError

__all__ = ["Publisher"]

STOP_TIMEOUT: Final = 2.0
ANSWER_TIMEOUT: Final = 5.0

_Waiting = tuple[str, bytes, "asyncio.Future[str]"]


class Publisher:
    """Adds entries to streams on a connection from `connect` (see the module
    docstring)."""

    def __init__(
        self, connect: Callable[[], Awaitable[WireConnection]], history: int, ttl: float | None
    ) -> None:
        self.connect = connect
        self._wire: WireConnection | None = None
        self.history = history
        self.ttl_ms = None if ttl is None else max(1, int(ttl * 1000))
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def publish(self, key: str, body: bytes) -> str:
        """Add `body` to the stream `key`; return the entry id (raises redis-py's error)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()
        self._waiting.append((key, body, done))
        if self._writer is None:
            self._writer = loop.create_task(self._write(), name="streamfx.redis publisher")
        return await done

    async def stop(self) -> None:
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await asyncio.wait({writer})
            await cancel_and_wait([writer])
        self._fail(self._waiting, BroadcastError("the Redis backend stopped"))
        self._waiting = []
        if self._wire is not None:
            self._wire.close()
            self._wire = None

    async def _write(self) -> None:
        batch: list[_Waiting] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    replies = await self._send(batch)
                except Exception as exc:
                    self._fail(batch, exc)
                else:
                    for (_, _, done), reply in zip(batch, replies, strict=True):
                        if done.done():
                            continue  # its caller was cancelled
                        if isinstance(reply, Exception):
                            done.set_exception(reply)
                        else:
                            done.set_result(text(reply))
                batch = []
        finally:
            self._writer = None
            self._fail(batch, BroadcastError("the Redis backend stopped while publishing"))

    async def _send(self, batch: list[_Waiting]) -> list[Any]:
        """One reply per publish of `batch` (a `ResponseError` for a refused command)."""
        if self._wire is None or self._wire.closed:  # closed by a failure, or by Redis
            if self._wire is not None:
                self._wire.close()
                self._wire = None
            self._wire = await self.connect()
        adds = [
            ("XADD", key, "MAXLEN", "~", self.history, "*", FIELD, body) for key, body, _ in batch
        ]
        if self.ttl_ms is None:
            return await self._wire.pipeline(adds, within=ANSWER_TIMEOUT)
        commands: list[tuple[Any, ...]] = [("MULTI",)]
        for add in adds:
            commands += [add, ("PEXPIRE", add[1], self.ttl_ms)]
        replies = await self._wire.pipeline([*commands, ("EXEC",)], within=ANSWER_TIMEOUT)
        done = replies[-1]
        if isinstance(done, Exception):  # the transaction was refused as a whole
            return [done] * len(batch)
        return list(done[::2])

    @staticmethod
    def _fail(batch: list[_Waiting], error: BaseException) -> None:
        for _, _, done in batch:
            if not done.done():
                done.set_exception(error)
