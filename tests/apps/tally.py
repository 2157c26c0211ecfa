"""What a test app's bodies did, as counters the test can read, in process or not.

A `Tally` is a fixed set of 64-bit counters laid out as a ctypes structure. In process
it lives in ordinary memory (``Tally()``); for a server in another process (gunicorn,
granian) it lives in a file both processes map (`Tally.mapped`), so the test reads the
app's counters directly, even while the server's one worker is busy with a stream.
Each counter has one writer at a time (the app's event loop, or the test for
``consumed`` and ``go``), so plain reads and writes are enough.

`TallyMetrics` is a streamfx metrics hook that counts into a tally, per stream kind.
"""

from __future__ import annotations

import ctypes
import mmap
from pathlib import Path
from typing import Final

from streamfx.metrics import Outcome

KINDS: Final = ("test", "sse", "download", "export")
FIGURES: Final = ("opened", "active", "items", "bytes", "dropped", "completed", "error", "closed")

ROUTE_COUNTERS: Final = (
    "started",  # sources that started
    "finalized",  # sources whose ``finally`` ran
    "closes",  # aclose() calls an adapter made on a counted body
    "produced",  # items produced by the numbered and endless sources
    "consumed",  # items the test's client has read (written by the test)
    "max_lead",  # the most ``produced - consumed`` ever was
    "go",  # how far a gated SSE source may go (written by the test)
    "upload_parts",  # file parts an upload handler started to store
    "background",  # background tasks run after a response
)
COUNTERS: Final = ROUTE_COUNTERS + tuple(f"{kind}_{figure}" for kind in KINDS for figure in FIGURES)


class Tally(ctypes.Structure):
    """The counters (all zero at first). ``tally.started += 1`` and so on."""

    _fields_ = [(name, ctypes.c_int64) for name in COUNTERS]

    started: int
    finalized: int
    closes: int
    produced: int
    consumed: int
    max_lead: int
    go: int
    upload_parts: int
    background: int

    @classmethod
    def mapped(cls, path: Path, *, create: bool = False) -> Tally:
        """The tally kept in the file at `path` (zeroed first when `create`)."""
        if create:
            path.write_bytes(bytes(ctypes.sizeof(cls)))
        with path.open("r+b") as file:
            memory = mmap.mmap(file.fileno(), ctypes.sizeof(cls))
        return cls.from_buffer(memory)

    def reset(self) -> None:
        ctypes.memset(ctypes.addressof(self), 0, ctypes.sizeof(self))

    def count(self, kind: str, figure: str) -> int:
        """A `TallyMetrics` figure: ``tally.count("sse", "closed")``."""
        value: int = getattr(self, f"{kind}_{figure}")
        return value

    def add(self, kind: str, figure: str, amount: int = 1) -> None:
        name = f"{kind}_{figure}"
        setattr(self, name, getattr(self, name) + amount)

    def produce(self) -> None:
        """One more item produced: updates ``produced`` and ``max_lead``."""
        self.produced += 1
        self.max_lead = max(self.max_lead, self.produced - self.consumed)


class TallyMetrics:
    """A metrics hook counting into `tally` (streams of other kinds are ignored)."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def _add(self, kind: str, figure: str, amount: int = 1) -> None:
        if kind in KINDS:
            self.tally.add(kind, figure, amount)

    def stream_opened(self, kind: str, name: str) -> None:
        self._add(kind, "opened")
        self._add(kind, "active")

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        self._add(kind, "active", -1)
        self._add(kind, outcome)

    def items_sent(self, kind: str, name: str, items: int, nbytes: int) -> None:
        self._add(kind, "items", items)
        self._add(kind, "bytes", nbytes)

    def items_dropped(self, kind: str, name: str, items: int) -> None:
        self._add(kind, "dropped", items)

    def circuit_changed(self, name: str, old: str, new: str) -> None:
        pass
