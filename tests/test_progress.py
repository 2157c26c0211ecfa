from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import streamfx
from tests._sources import Probe, counting, forever


async def chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


async def test_reports_every_n_items_and_once_at_the_end() -> None:
    reports: list[streamfx.Progress] = []
    got = [x async for x in streamfx.progress(chunks(10, 3), reports.append, every=4)]
    assert len(got) == 10
    assert [(r.count, r.bytes, r.done) for r in reports] == [
        (4, 12, False),
        (8, 24, False),
        (10, 30, True),
    ]


async def test_reports_by_time() -> None:
    now = 0.0

    def clock() -> float:
        return now

    reports: list[streamfx.Progress] = []
    stream = streamfx.progress(counting(6, Probe()), reports.append, interval=1.0, clock=clock)
    async for item in stream:
        now += 0.6
        del item
    # items arrive at t=0, .6, 1.2, 1.8, 2.4, 3.0 -> due at the 3rd (1.2s) and 5th (2.4s) item
    assert [(r.count, r.done) for r in reports] == [(3, False), (5, False), (6, True)]
    assert reports[-1].elapsed == pytest.approx(3.6)


async def test_final_report_on_early_close_and_async_reporter() -> None:
    reports: list[streamfx.Progress] = []

    async def report(p: streamfx.Progress) -> None:
        reports.append(p)

    stream = streamfx.progress(forever(Probe()), report)
    for _ in range(3):
        await anext(stream)
    await stream.aclose()
    assert [(r.count, r.done) for r in reports] == [(3, True)]


async def test_final_report_on_error() -> None:
    reports: list[streamfx.Progress] = []
    with pytest.raises(RuntimeError):
        async for _ in streamfx.progress(counting(5, Probe(), fail_at=2), reports.append):
            pass
    assert [(r.count, r.done) for r in reports] == [(2, True)]


@pytest.mark.parametrize(
    "kwargs", [{"every": 0}, {"every": 2.5}, {"interval": 0}, {"interval": -1}]
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        streamfx.progress(counting(1, Probe()), print, **kwargs)  # type: ignore[arg-type]
