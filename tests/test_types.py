"""The element type flows through every combinator: checked by mypy --strict (which
runs over the tests) with `typing.assert_type`, and at run time by the values."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import assert_type

import streamfx


async def words() -> AsyncIterator[str]:
    yield "a"
    yield "b"


async def test_types_flow_through_every_combinator() -> None:
    breaker = streamfx.CircuitBreaker()
    buffered = streamfx.buffer(words(), 4, "sliding")
    assert_type(buffered, AsyncGenerator[str, None])
    tapped = streamfx.tap(buffered, lambda s: None)
    assert_type(tapped, AsyncGenerator[str, None])
    guarded = streamfx.circuit(tapped, breaker)
    assert_type(guarded, AsyncGenerator[str, None])
    reported = streamfx.progress(guarded, lambda p: None)
    assert_type(reported, AsyncGenerator[str, None])
    ensured = streamfx.ensuring(reported, lambda: None)
    assert_type(ensured, AsyncGenerator[str, None])
    beating = streamfx.heartbeat(ensured, 10.0, 0)
    assert_type(beating, AsyncGenerator[str | int, None])
    merged = streamfx.merge(beating, words())
    assert_type(merged, AsyncGenerator[str | int, None])
    assert sorted([x async for x in merged], key=str) == ["a", "a", "b", "b"]
