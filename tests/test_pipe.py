from __future__ import annotations

from typing import Any

import pytest
from aiostream import pipe, stream

import streamfx
import streamfx.pipe as sfpipe


async def test_buffer_composes_with_aiostream_operators() -> None:
    def double(x: int) -> int:
        return x * 2

    xs = stream.iterate(range(10)) | sfpipe.buffer(64, "sliding") | pipe.map(double)  # type: ignore[arg-type]  # aiostream's map wants *args
    assert await stream.list(xs) == [x * 2 for x in range(10)]  # type: ignore[arg-type]


async def test_every_operator_works_in_a_pipeline() -> None:
    seen: list[int] = []
    finalized: list[bool] = []
    reports: list[streamfx.Progress] = []
    breaker = streamfx.CircuitBreaker()
    xs = (
        stream.iterate(range(5))
        | sfpipe.merge(stream.iterate(range(100, 103)))
        | sfpipe.tap(seen.append)
        | sfpipe.heartbeat(5.0, -1)
        | sfpipe.circuit(breaker)
        | sfpipe.progress(reports.append)
        | sfpipe.ensuring(lambda: finalized.append(True))
    )
    result: Any = await stream.list(xs)  # type: ignore[arg-type]
    got: list[int] = result
    assert sorted(got) == [0, 1, 2, 3, 4, 100, 101, 102]
    assert sorted(seen) == sorted(got)
    assert finalized == [True]
    assert reports[-1].count == 8


def test_pipe_buffer_checks_its_arguments_at_the_call() -> None:
    with pytest.raises(ValueError, match="capacity"):
        sfpipe.buffer(0)
