from __future__ import annotations

from collections.abc import AsyncIterator

import streamfx


async def test_buffer_passes_items_through() -> None:
    async def source() -> AsyncIterator[int]:
        for i in range(100):
            yield i

    assert [x async for x in streamfx.buffer(source(), 8)] == list(range(100))
