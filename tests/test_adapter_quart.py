"""What only `streamfx.adapters.quart.to_quart` does. Everything every adapter does,
Quart's included under uvicorn and hypercorn: tests/test_adapter_contract*.py (the app
is tests/apps/quart_app.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamfx.adapters.quart import to_quart
from tests._stream_routes import make_routes
from tests.apps.tally import Tally


async def test_write_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="write_timeout"):
        await to_quart(make_routes(Tally(), Path())["/lines"]({}, ""), write_timeout=0)
