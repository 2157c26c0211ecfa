"""What the page's live counters show: the metrics hook's figures, and the exports.

`LiveCounters` is an `InMemoryMetrics` (the hook that keeps every figure) with a
`snapshot` for the page. `ExportLog` remembers the last few exports (rows, bytes, time,
outcome) so the page can show them when the browser's download is done; `tracked`
wraps an export response's body to fill one record in.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from streamfx import StreamResponse
from streamfx.metrics import InMemoryMetrics

RECENT_EXPORTS: Final = 20


class LiveCounters(InMemoryMetrics):
    """The in-memory hook, plus a JSON-ready summary for the page."""

    def snapshot(self) -> dict[str, Any]:
        streams = sorted(set(self.opened) | set(self.active))
        return {
            "active": self.total("active"),
            "opened": self.total("opened"),
            "events": sum(n for (kind, _), n in self.items.items() if kind in ("sse", "broadcast")),
            "items": self.total("items"),
            "bytes": self.total("bytes"),
            "dropped": self.total("dropped"),
            "streams": [
                {
                    "kind": kind,
                    "name": name,
                    "active": self.active[kind, name],
                    "opened": self.opened[kind, name],
                    "items": self.items[kind, name],
                    "bytes": self.bytes[kind, name],
                    "dropped": self.dropped[kind, name],
                }
                for kind, name in streams
            ],
        }


@dataclass
class ExportRecord:
    """One export as the server saw it: filled in while the body is sent."""

    token: str
    format: str
    requested: int
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    outcome: str = "running"
    started: float = field(default_factory=time.monotonic)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["started"]
        return data


class ExportLog:
    """The last `RECENT_EXPORTS` exports, newest last."""

    def __init__(self, size: int = RECENT_EXPORTS) -> None:
        self.size = size
        self._records: OrderedDict[str, ExportRecord] = OrderedDict()

    def start(self, token: str, format: str, requested: int) -> ExportRecord:
        record = ExportRecord(token, format, requested)
        self._records.pop(token, None)
        self._records[token] = record
        while len(self._records) > self.size:
            self._records.popitem(last=False)
        return record

    def recent(self) -> list[dict[str, Any]]:
        return [record.as_json() for record in self._records.values()]


def counted_rows(record: ExportRecord, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """`rows`, counting them into `record`."""
    for row in rows:
        record.rows += 1
        yield row


def tracked(response: StreamResponse, record: ExportRecord) -> StreamResponse:
    """`response` with a body that counts its bytes into `record` and, however it ends,
    stamps the time and the outcome (``completed``, ``error`` or ``closed``)."""

    async def body() -> AsyncIterator[bytes]:
        outcome = "closed"
        try:
            async for chunk in response.body:
                record.bytes += len(chunk)
                yield chunk
            outcome = "completed"
        except Exception:
            outcome = "error"
            raise
        finally:
            try:
                await response.aclose()
            finally:
                record.seconds = round(time.monotonic() - record.started, 3)
                record.outcome = outcome

    return StreamResponse(response.status, list(response.headers), body())
