"""Shared fixtures for the benchmarks: one event loop per module, reused by every round,
so that loop start-up is not part of what is measured."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    """``run(make_coro)`` runs one fresh coroutine to completion on the module's loop."""

    def runner(make: Callable[[], Awaitable[Any]]) -> Any:
        return loop.run_until_complete(make())

    return runner
