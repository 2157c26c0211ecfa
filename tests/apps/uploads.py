"""What every test app's ``POST /upload`` does with the parts, whatever its adapter.

The limits come from the query (``max_size``, ``max_part_size``, ``max_parts``,
``allowed`` as a comma-separated list of types). Fields are kept in memory; file parts
are stored under ``ROOT/uploads`` (one file each, ``tally.upload_parts`` counts the
ones started). A refused upload removes what it stored and appends
``TypeName: detail`` to ``ROOT/refused.log``; the app then answers the error the way
its adapter offers. An accepted one is answered with `Upload.result`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterable, Iterable, Mapping
from pathlib import Path
from typing import Any

from streamfx import Part, UploadError
from streamfx.adapters.wsgi import WSGIPart
from tests.apps.tally import Tally


def limits(query: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments of the adapter's upload helper."""
    allowed = query.get("allowed")
    return {
        "max_size": int(query.get("max_size", "10000000")),
        "max_part_size": int(query.get("max_part_size", "10000000")),
        "max_parts": int(query.get("max_parts", "10")),
        "allowed_types": allowed.split(",") if allowed else None,
    }


class Upload:
    """The parts of one request, as stored so far."""

    def __init__(self, root: Path, tally: Tally) -> None:
        self.root = root
        self.tally = tally
        self.saved: list[Path] = []
        self.fields: dict[str, str] = {}
        self.files: dict[str, list[object]] = {}

    def begin_file(self, part_name: str) -> Path:
        target = self.root / "uploads" / f"{uuid.uuid4().hex}.part"
        target.parent.mkdir(exist_ok=True)
        target.touch()
        self.saved.append(target)
        self.tally.upload_parts += 1
        return target

    def end_file(self, part_name: str, filename: str, target: Path) -> None:
        data = target.read_bytes()
        self.files[part_name] = [filename, len(data), hashlib.sha256(data).hexdigest()]

    def discard(self) -> None:
        """Remove what was stored (the upload ended without an answer)."""
        for path in self.saved:
            path.unlink(missing_ok=True)

    def refuse(self, exc: UploadError) -> None:
        self.discard()
        with (self.root / "refused.log").open("a") as log:
            log.write(f"{type(exc).__name__}: {exc.detail}\n")

    def result(self) -> dict[str, Any]:
        return {"fields": self.fields, "files": self.files}

    def store(self, parts: Iterable[WSGIPart]) -> dict[str, Any]:
        """Store synchronous parts (WSGI)."""
        for part in parts:
            if part.filename is None:
                self.fields[part.name] = part.read().decode()
                continue
            target = self.begin_file(part.name)
            with target.open("ab") as file:
                for chunk in part:
                    file.write(chunk)
            self.end_file(part.name, part.filename, target)
        return self.result()

    async def store_async(self, parts: AsyncIterable[Part]) -> dict[str, Any]:
        """Store asynchronous parts (ASGI, aiohttp)."""
        async for part in parts:
            if part.filename is None:
                self.fields[part.name] = (await part.read()).decode()
                continue
            target = self.begin_file(part.name)
            with target.open("ab") as file:
                async for chunk in part:
                    file.write(chunk)
            self.end_file(part.name, part.filename, target)
        return self.result()


def refused_log(root: Path) -> list[str]:
    """Every refusal so far, oldest first (``TypeName: message``)."""
    log = root / "refused.log"
    return log.read_text().splitlines() if log.exists() else []
