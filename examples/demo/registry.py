"""Which jobs exist, which one is the latest, and who follows each: for the page.

A job's record is ``{"id", "since", "steps"}``: `since` is the id of the job's
``created`` event, the position a subscriber starts from to see the job from its
first step. With one process the records live here (`LocalRegistry`, the newest
`MAX_JOBS`); with several workers they live in Redis (`RedisRegistry`, keys that
expire after a day), so that any worker can serve any job. Job ids are 12 lower-case
hex digits; anything else is unknown without asking anyone.

Presence: each job stream joins as ``<subscriber>@<worker pid>`` when it starts and
leaves when it ends (a count per name, so a reconnect that overlaps the old
connection is counted right), so the page can list who follows the job and where.
"""

from __future__ import annotations

import json
import re
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any, Final, Protocol

from .simulation import MAX_JOBS

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["JobRegistry", "LocalRegistry", "RedisRegistry", "valid_job_id"]

JobRecord = dict[str, Any]
RECORD_TTL: Final = 86_400
_JOB_ID: Final = re.compile(r"[0-9a-f]{12}")


def valid_job_id(job_id: str) -> bool:
    return _JOB_ID.fullmatch(job_id) is not None


class JobRegistry(Protocol):
    async def remember(self, record: JobRecord) -> None: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def latest(self) -> JobRecord | None: ...

    async def join(self, job_id: str, member: str, change: int) -> None:
        """`member` (``name@pid``) opened (`change` 1) or closed (-1) a job stream."""

    async def followers(self, job_id: str) -> list[str]:
        """The members with a job stream open, sorted."""

    async def aclose(self) -> None: ...


class LocalRegistry:
    """The newest `max_jobs` job records, in this process."""

    def __init__(self, max_jobs: int = MAX_JOBS) -> None:
        self.max_jobs = max_jobs
        self._records: OrderedDict[str, JobRecord] = OrderedDict()
        self._presence: dict[str, Counter[str]] = {}

    async def remember(self, record: JobRecord) -> None:
        self._records[record["id"]] = record
        while len(self._records) > self.max_jobs:
            forgotten, _ = self._records.popitem(last=False)
            self._presence.pop(forgotten, None)

    async def get(self, job_id: str) -> JobRecord | None:
        return self._records.get(job_id) if valid_job_id(job_id) else None

    async def latest(self) -> JobRecord | None:
        return next(reversed(self._records.values()), None)

    async def join(self, job_id: str, member: str, change: int) -> None:
        if job_id in self._records:
            counts = self._presence.setdefault(job_id, Counter())
            counts[member] += change
            if counts[member] <= 0:
                del counts[member]

    async def followers(self, job_id: str) -> list[str]:
        return sorted(self._presence.get(job_id, ()))

    async def aclose(self) -> None:
        pass


class RedisRegistry:
    """Job records in Redis, shared by every worker: ``<prefix>registry:job:<id>`` and
    ``<prefix>registry:latest-job``, each expiring after `RECORD_TTL` seconds (the
    hub's streams are ``<prefix>job:<id>``: another key)."""

    def __init__(self, url: str, prefix: str) -> None:
        from redis.asyncio import Redis

        self.prefix = prefix + "registry:"
        self._redis: Redis = Redis.from_url(url)

    async def remember(self, record: JobRecord) -> None:
        text = json.dumps(record)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{self.prefix}job:{record['id']}", text, ex=RECORD_TTL)
            pipe.set(f"{self.prefix}latest-job", text, ex=RECORD_TTL)
            await pipe.execute()

    async def get(self, job_id: str) -> JobRecord | None:
        if not valid_job_id(job_id):
            return None
        return _record(await self._redis.get(f"{self.prefix}job:{job_id}"))

    async def latest(self) -> JobRecord | None:
        return _record(await self._redis.get(f"{self.prefix}latest-job"))

    async def join(self, job_id: str, member: str, change: int) -> None:
        key = f"{self.prefix}presence:{job_id}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, member, change)
            pipe.expire(key, RECORD_TTL)
            await pipe.execute()

    async def followers(self, job_id: str) -> list[str]:
        counts = await self._redis.hgetall(f"{self.prefix}presence:{job_id}")
        return sorted(_text(member) for member, count in counts.items() if int(count) > 0)

    async def aclose(self) -> None:
        await self._redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _record(raw: bytes | str | None) -> JobRecord | None:
    if raw is None:
        return None
    record: JobRecord = json.loads(raw)
    return record
