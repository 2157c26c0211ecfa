"""Shared test fixtures: every async test fails on a task left pending or an error
that the event loop only logs (such as "Task was destroyed but it is pending"); and
`metrics`, the process-wide metrics hook recording for one test.

Each test ends with a full garbage collection (so that a task dropped by the test is
destroyed, and logged, while the test is still the one to blame), then `gc.freeze()`:
what survived is moved out of the collector's sight, so the next test's collection scans
only what that test made. Without the freeze every collection walks the whole heap of the
session (the frameworks, hypothesis's caches), about a quarter of a second per test by
the end of the suite.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from streamfx.metrics import InMemoryMetrics, set_metrics


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    logged: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: logged.append(context))
    try:
        yield
        for _ in range(5):
            await asyncio.sleep(0)
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert not pending, f"tasks left pending: {pending}"
        assert not logged, f"the event loop logged errors: {logged}"
        gc.freeze()
    finally:
        loop.set_exception_handler(previous)


@pytest.fixture
def metrics() -> Iterator[InMemoryMetrics]:
    """The process-wide hook, recording, for the length of one test."""
    hook = InMemoryMetrics()
    previous = set_metrics(hook)
    try:
        yield hook
    finally:
        set_metrics(previous)
