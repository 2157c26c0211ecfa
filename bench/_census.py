"""What a server process holds, counted in the process and diffed between two moments:
the census behind ``python -m bench.idle_sse_asgi --census N``.

`take` runs inside the server (on its event loop, in one go: nothing else runs while it
counts). After a full collection it counts the live tasks, every object the garbage
collector tracks by type, and the ``bytes``/``bytearray`` objects those reach (the
collector does not track them: they are found as referents); with `tracemalloc`
tracing, it also dumps a snapshot to a file, which `traced_by_owner` compares with an
earlier one and attributes to the innermost frame of the code that asked for the
memory (streamfx, uvicorn, starlette, sse-starlette, the bench's app; else the
innermost frame, in parentheses: ``(asyncio/events.py):80``).

`per_stream` turns two censuses into figures per stream: what N idle streams added,
divided by N. Counting by type is the only way to see what the server holds per
connection whoever made it (a protocol, its transport, a parser, a task, a future, a
coroutine frame); tracemalloc says which line asked for the bytes.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

OWNERS = ("streamfx", "uvicorn", "sse_starlette", "starlette", "httptools", "uvloop", "bench")


def _type_name(thing: object) -> str:
    kind = type(thing)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def take(snapshot_path: Path | None) -> dict[str, Any]:
    """This process's census (see the module docstring); a tracemalloc snapshot is
    dumped to `snapshot_path` when tracing and a path is given."""
    gc.collect()
    objects = gc.get_objects()
    by_type = Counter(_type_name(thing) for thing in objects)
    seen: set[int] = set()
    byte_count = byte_size = 0
    for thing in objects:
        for referent in gc.get_referents(thing):
            if type(referent) in (bytes, bytearray) and id(referent) not in seen:
                seen.add(id(referent))
                byte_count += 1
                byte_size += sys.getsizeof(referent)
    del objects, seen  # not counted in the snapshot below
    traced = 0
    if tracemalloc.is_tracing():
        traced = tracemalloc.get_traced_memory()[0]
        if snapshot_path is not None:
            tracemalloc.take_snapshot().dump(str(snapshot_path))
    return {
        "tasks": len(asyncio.all_tasks()),
        "types": dict(by_type),
        "bytes_objects": byte_count,
        "bytes_size": byte_size,
        "traced": traced,
    }


def owner(frames: list[tracemalloc.Frame]) -> str:
    """``package/file.py:line`` of the innermost frame (first in `frames`) of one of
    `OWNERS`, else ``(folder/file.py):line`` of the innermost frame."""
    for frame in frames:
        path = frame.filename.replace("\\", "/")
        for name in OWNERS:
            marker = f"/{name}/"
            if marker in path:
                return f"{name}/{path.split(marker)[-1]}:{frame.lineno}"
    first = frames[0]
    parts = first.filename.replace("\\", "/").split("/")
    return f"({'/'.join(parts[-2:])}):{first.lineno}"


def traced_by_owner(before: Path, after: Path) -> Counter[str]:
    """Bytes traced at `after` and not at `before`, by `owner` line (growth only)."""
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    found: Counter[str] = Counter()
    for stat in new.compare_to(old, "traceback"):
        if stat.size_diff > 0:
            found[owner(list(reversed(stat.traceback)))] += stat.size_diff
    return found


def per_stream(before: dict[str, Any], after: dict[str, Any], count: int) -> dict[str, Any]:
    """What `count` streams added between two censuses, per stream."""
    types = Counter(after["types"])
    types.subtract(before["types"])
    return {
        "tasks": (after["tasks"] - before["tasks"]) / count,
        "objects": sum(types.values()) / count,
        "types": {name: n / count for name, n in types.most_common() if n / count >= 0.5},
        "bytes_objects": (after["bytes_objects"] - before["bytes_objects"]) / count,
        "bytes_size": (after["bytes_size"] - before["bytes_size"]) / count,
        "traced": (after["traced"] - before["traced"]) / count,
    }


def by_package(lines: Counter[str]) -> Counter[str]:
    """`traced_by_owner`'s lines summed by package (the part before the first slash)."""
    found: Counter[str] = Counter()
    for where, size in lines.items():
        found[where.split("/", 1)[0] if not where.startswith("(") else "(other)"] += size
    return found
