"""Run a test as on an install with orjson and as on one without it.

`json_backend(name, monkeypatch)` is the body of a parametrized fixture: for
``"json"`` it makes ``import orjson`` fail (as when the extra is not installed), and
for both it drops the shared serializer and the shared SSE encoder, so `sse()` and
`export()` build new ones under those conditions; they are dropped again afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from streamfx._response.json import default_serializer
from streamfx._sse.response import _default_encoder

BACKENDS = ("orjson", "json")


def _forget_shared() -> None:
    default_serializer.cache_clear()
    _default_encoder.cache_clear()


def json_backend(name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if name == "json":
        monkeypatch.setitem(sys.modules, "orjson", None)  # `import orjson` now raises
    _forget_shared()
    assert default_serializer().uses_orjson is (name == "orjson")
    try:
        yield name
    finally:
        _forget_shared()
