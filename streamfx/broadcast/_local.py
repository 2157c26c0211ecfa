"""The in-process backend: each topic's log *is* its history.

Ids are ``<epoch>-<n>``: `n` counts the topic's events from 1, and the epoch names the
log (eight random hex digits per hub, then the topic's serial number in hex), so an id
from another topic, another hub or an earlier run of the process is recognised as
unknown instead of being taken for a position here.

At most `max_topics` topics are kept; past that, publishing to a new topic forgets
the topic that was published to least recently among those nobody follows (its
history is gone: a client resuming it gets a ``reset``). Topics that have subscribers
are never forgotten.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable

from streamfx.broadcast._backend import Located
from streamfx.broadcast._frames import with_id
from streamfx.broadcast._log import TopicLog

__all__ = ["LocalBackend"]

_MAX_NUMBER_DIGITS = 18


class LocalBackend:
    """Topic logs in this process; see the module docstring."""

    def __init__(self, max_topics: int) -> None:
        self._max_topics = max_topics
        self._capacity = 1
        self._epoch = secrets.token_hex(4)
        self._serial = 0
        self._logs: OrderedDict[str, TopicLog] = OrderedDict()

    def bind(
        self, capacity: int, on_health: Callable[[bool], None], on_resets: Callable[[int], None]
    ) -> None:
        self._capacity = capacity

    @property
    def healthy(self) -> bool:
        return True

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, topic: str, body: bytes) -> str:
        log = self._log(topic)
        event_id = log.local_id(log.next)
        log.append(with_id(body, event_id))
        return event_id

    def attach(self, topic: str) -> TopicLog:
        log = self._log(topic)
        log.subscribers += 1
        return log

    def detach(self, log: TopicLog) -> None:
        log.subscribers -= 1

    def position(self, log: TopicLog, number: int) -> str:
        return log.local_id(number)

    def locate(self, log: TopicLog, position: str) -> Located:
        epoch, _, digits = position.rpartition("-")
        if (
            epoch != log.epoch
            or not (digits.isascii() and digits.isdigit())
            or len(digits) > _MAX_NUMBER_DIGITS
        ):
            return Located(None, reason="unknown")
        number = int(digits)
        if number > log.head:
            return Located(None, reason="unknown")
        if number < log.first - 1:
            return Located(None, reason="expired")
        return Located(number)

    async def fetch(self, log: TopicLog, position: str) -> Located:
        return self.locate(log, position)

    @property
    def topics(self) -> int:
        """How many topics are held."""
        return len(self._logs)

    def _log(self, topic: str) -> TopicLog:
        logs = self._logs
        log = logs.get(topic)
        if log is not None:
            logs.move_to_end(topic)
            return log
        if len(logs) >= self._max_topics:
            self._forget_idle(self._max_topics - 1)
        self._serial += 1
        log = logs[topic] = TopicLog(topic, self._capacity, epoch=f"{self._epoch}{self._serial:x}")
        return log

    def _forget_idle(self, keep: int) -> None:
        """Forget the least recently published idle topics until at most `keep` remain
        (fewer cannot be forgotten when the others all have subscribers)."""
        logs = self._logs
        looked = 0
        while len(logs) > keep and looked < len(logs):
            topic, oldest = next(iter(logs.items()))
            if oldest.subscribers:
                logs.move_to_end(topic)
                looked += 1
            else:
                del logs[topic]
