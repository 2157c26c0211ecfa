"""The soak's churn scenario (`bench.soak.churn`): before its baseline, a
thread-per-request server's pool is filled, so that the cycles cannot grow it, and the
warm-up goes on until the server's RSS levels off, so that its "RSS flat in the 2nd
half" check measures what a cycle leaves behind, not threads or a server settling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, cast

import pytest

from bench.soak import churn
from bench.soak.common import steady
from bench.soak.targets import TARGETS, Server

GUNICORN = next(target for target in TARGETS if "gunicorn" in target.name)
THREADS = 12


async def test_filling_a_gthread_pool_starts_every_thread_and_the_cycles_start_none() -> None:
    async with asyncio.timeout(60), Server(GUNICORN, threads=THREADS, tag="test-churn") as server:
        started = await server.stats()
        assert started["threads"] < THREADS  # gthread starts its pool's threads lazily
        assert await churn.fill_the_pool(server.port, THREADS) == THREADS
        filled = await steady(server)
        assert filled["started"] == filled["finalized"] == started["started"] + THREADS
        # the pool's threads, the main thread and the WSGI adapter's loop thread
        assert filled["threads"] == THREADS + 2
        assert await churn.cycles(server.port, 4 * THREADS, THREADS) == 0
        after = await steady(server)
        assert after["threads"] == filled["threads"]
        assert after["finalized"] == filled["finalized"] + 4 * THREADS


class RSSServer:
    """A server whose ``/stats`` reads the given RSS figures, one per call."""

    port = 0

    def __init__(self, rss: Iterator[int]) -> None:
        self.rss = rss
        self.reads = 0

    async def stats(self) -> dict[str, Any]:
        self.reads += 1
        return {"rss_kb": next(self.rss)}


@pytest.fixture
def no_cycles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """`churn.cycles` counting the cycles asked for instead of running them."""
    asked: list[int] = []

    async def cycles(port: int, count: int, concurrency: int) -> int:
        asked.append(count)
        return 0

    monkeypatch.setattr(churn, "cycles", cycles)
    return asked


async def test_the_warm_up_goes_on_until_a_round_leaves_the_rss_flat(no_cycles: list[int]) -> None:
    flat = churn.WARM_FLAT_KB
    server = RSSServer(iter([40_000, 49_000, 52_000, 52_000 + flat, 99_999]))
    assert await churn.warm_up(cast(Server, server), 1000, 32) == 3000
    assert no_cycles == [1000] * 3
    assert server.reads == 4  # the start and one read per round


async def test_a_server_that_never_levels_off_is_warmed_up_for_so_many_rounds(
    no_cycles: list[int],
) -> None:
    leaking = (1000 * index for index in range(100))  # 1 MB more each round
    assert await churn.warm_up(cast(Server, RSSServer(leaking)), 200, 16) == 200 * churn.WARM_ROUNDS


def test_the_trend_of_a_steady_leak_is_its_growth() -> None:
    leaking = [50_000 + 500 * index for index in range(11)]  # 500 KB every interval
    assert churn.second_half(leaking) == (2500, 2500)


def test_one_step_of_an_allocator_is_not_a_trend() -> None:
    # aiohttp's RSS: flat, one rise of 3.5 MB, flat again
    stepped = [45_236] * 6 + [48_896, 49_196, 49_196, 49_196, 49_220]
    growth, trend = churn.second_half(stepped)
    assert growth == 3984
    assert trend == 5 * 24 < churn.FLAT_KB  # the median interval grew 24 KB


def test_a_leak_in_most_intervals_is_a_trend() -> None:
    bursty = [
        50_000,
        50_000,
        50_000,
        50_000,
        50_000,
        50_000,
        50_600,
        51_200,
        51_200,
        51_800,
        52_400,
    ]
    assert churn.second_half(bursty)[1] == 3000 > churn.FLAT_KB
