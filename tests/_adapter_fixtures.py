"""The fixtures of the adapter tests, loaded by a test module with
``pytest_plugins = ["tests._adapter_fixtures"]`` (and imported by nothing else, so
that pytest loads it as a plugin):

- `target`: module-scoped, every `Target` of tests/_adapter_contract.py (a module
  may override it with fewer);
- `elsewhere`: the module's server in another process for the target, if it has one;
- `deployment`: the target's app serving, for one test (see `Deployment`); it skips a
  test marked with `requires` where the target lacks that by design, and marks as
  xfail (strict) a test that fails there today (`KNOWN_DEFECTS`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests._adapter_contract import (
    KNOWN_DEFECTS,
    Deployment,
    Target,
    serve_elsewhere,
    serve_here,
    targets,
)
from tests.apps.tally import Tally


@pytest.fixture(scope="module", params=targets())
def target(request: pytest.FixtureRequest) -> Target:
    """Every target (a module may override this fixture with fewer)."""
    chosen: Target = request.param
    return chosen


@pytest.fixture(scope="module")
def elsewhere(
    target: Target, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path] | None]:
    """The module's server in another process for `target` (None for one in process)."""
    if not target.remote:
        yield None
        return
    root = tmp_path_factory.mktemp(target.id)
    with serve_elsewhere(target, root) as port:
        yield port, root


@pytest.fixture
async def deployment(
    request: pytest.FixtureRequest,
    target: Target,
    elsewhere: tuple[int, Path] | None,
    tmp_path: Path,
) -> AsyncIterator[Deployment]:
    for capability in getattr(request.function, "__requires__", ()):
        reason = target.lacks(capability)
        if reason is not None:
            pytest.skip(reason)
    defect = KNOWN_DEFECTS.get((target.adapter, request.function.__name__))
    if defect is not None:
        request.applymarker(pytest.mark.xfail(reason=defect, strict=True))
    async with contextlib.AsyncExitStack() as stack:
        if elsewhere is None:
            tally, root = Tally(), tmp_path
            port = await stack.enter_async_context(serve_here(target, tally, root))
        else:
            port, root = elsewhere
            tally = Tally.mapped(root / "tally.bin")
            tally.reset()
        base_url = f"http://127.0.0.1:{port}"
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=base_url, timeout=30))
        yield Deployment(target, port, tally, root, client)
