"""The demo's large download: a file of made-up bytes, written in a worker thread.

The page shows the progress while it is written. With several workers, the file is
written once by ``python -m examples.demo`` before they start, and each worker finds it
complete (`write` then returns at once).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Final

__all__ = ["BigFile", "MiB"]

MiB: Final = 1024 * 1024


class BigFile:
    """The large file, written at start-up in a worker thread (the page shows progress)."""

    def __init__(self, directory: Path, size: int) -> None:
        self.path = directory / f"streamfx-demo-{size // MiB}MB.bin"
        self.size = size
        self.written = 0

    @property
    def ready(self) -> bool:
        return self.written == self.size

    def write(self) -> None:
        if self.path.exists() and self.path.stat().st_size == self.size:
            self.written = self.size  # written before the workers started
            return
        block = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(MiB // 32))
        tmp = self.path.with_suffix(".part")
        with tmp.open("wb") as out:
            while self.written + len(block) <= self.size:
                out.write(block)
                self.written += len(block)
            out.write(block[: self.size - self.written])
        tmp.rename(self.path)
        self.written = self.size

    def info(self) -> dict[str, Any]:
        return {"name": self.path.name, "size": self.size, "written": self.written}
