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

OWNERS = (
    "streamfx",
    "uvicorn",
    "sse_starlette",
    "starlette",
    "aiohttp_sse",
    "aiohttp",
    "httptools",
    "uvloop",
    "bench",
)


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
    timers = Counter(_timer_name(thing) for thing in objects if _is_timer(thing))
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
        "timers": dict(timers),
        "bytes_objects": byte_count,
        "bytes_size": byte_size,
        "traced": traced,
    }


def _is_timer(thing: object) -> bool:
    return type(thing).__name__ == "TimerHandle"


def _timer_name(handle: Any) -> str:
    """What a loop timer (asyncio's or uvloop's `TimerHandle`) will call, and whether
    it was cancelled (a cancelled timer stays in the loop's heap until its time)."""
    callback = getattr(handle, "_callback", None) or getattr(handle, "callback", None)
    name = getattr(callback, "__qualname__", None) or type(callback).__qualname__
    owner = getattr(callback, "__self__", None)
    if owner is not None:
        name = f"{type(owner).__qualname__}.{getattr(callback, '__name__', name)}"
    return f"{name}{' (cancelled)' if handle.cancelled() else ''}"


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
    timers = Counter(after["timers"])
    timers.subtract(before["timers"])
    return {
        "tasks": (after["tasks"] - before["tasks"]) / count,
        "objects": sum(types.values()) / count,
        "types": {name: n / count for name, n in types.most_common() if n / count >= 0.5},
        "timers": {name: n / count for name, n in timers.most_common() if n},
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


TOP_LINES = 20


def print_report(
    what: str,
    rss: dict[str, float],
    figures: dict[str, dict[str, Any]],
    lines: dict[str, Counter[str]],
) -> None:
    """The contenders side by side: RSS (bytes per connection, measured without
    tracing), `per_stream`'s `figures`, objects by type, traced bytes by package, and
    each one's `TOP_LINES` largest allocating lines (`lines`: bytes per connection)."""
    names = list(figures)
    print(f"\nwhat one idle SSE connection holds, {what}")
    print(f"{'per connection':<40}" + "".join(f"{name[-18:]:>19}" for name in names))
    rows = [
        ("RSS KB (no tracing)", [rss[name] / 1024 for name in names], ".1f"),
        ("traced KB (tracemalloc)", [figures[name]["traced"] / 1024 for name in names], ".2f"),
        ("tasks", [figures[name]["tasks"] for name in names], ".2f"),
        ("gc-tracked objects", [figures[name]["objects"] for name in names], ".1f"),
        ("bytes/bytearray objects", [figures[name]["bytes_objects"] for name in names], ".2f"),
        ("bytes/bytearray B", [figures[name]["bytes_size"] for name in names], ".0f"),
    ]
    for label, values, spec in rows:
        print(f"{label:<40}" + "".join(f"{value:>19{spec}}" for value in values))
    print("objects by type (at least 0.5 per connection in one of them):")
    every_type = sorted(
        {kind for name in names for kind in figures[name]["types"]},
        key=lambda kind: -max(figures[name]["types"].get(kind, 0) for name in names),
    )
    for kind in every_type:
        values = [figures[name]["types"].get(kind, 0.0) for name in names]
        print(f"  {kind[-38:]:<38}" + "".join(f"{value:>19.2f}" for value in values))
    print("loop timers by what they call:")
    for kind in sorted({kind for name in names for kind in figures[name]["timers"]}):
        values = [figures[name]["timers"].get(kind, 0.0) for name in names]
        print(f"  {kind[-38:]:<38}" + "".join(f"{value:>19.2f}" for value in values))
    print("traced B by package:")
    packages = {name: by_package(lines[name]) for name in names}
    for package in sorted({p for name in names for p in packages[name]}):
        values = [packages[name].get(package, 0.0) for name in names]
        print(f"  {package:<38}" + "".join(f"{value:>19.0f}" for value in values))
    for name in names:
        print(f"traced B by line, {name}, largest first:")
        for where, size in lines[name].most_common(TOP_LINES):
            print(f"  {size:8.0f}  {where}")
