"""The fixtures of the adapter tests, loaded by a test module with
``pytest_plugins = ["tests._adapter_fixtures"]`` (and imported by nothing else, so
that pytest loads it as a plugin):

- `target`: module-scoped, every `Target` of tests/_adapter_contract.py (a module
  may override it with fewer);
- `module_server`: the module's server for the target, if it serves a whole module;
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

from streamfx.metrics import set_metrics
from tests._adapter_contract import (
    KNOWN_DEFECTS,
    Deployment,
    Target,
    serve_for_module,
    serve_here,
    targets,
)
from tests.apps.tally import Tally, TallyMetrics


@pytest.fixture(scope="module", params=targets())
def target(request: pytest.FixtureRequest) -> Target:
    """Every target (a module may override this fixture with fewer)."""
    chosen: Target = request.param
    return chosen


@pytest.fixture(scope="module")
def module_server(
    target: Target, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path, Tally] | None]:
    """The module's server for `target` if it serves a whole module (None otherwise):
    ``(port, root, tally)``."""
    if not target.per_module:
        yield None
        return
    root = tmp_path_factory.mktemp(target.id)
    with serve_for_module(target, root) as (port, tally):
        yield port, root, tally


@pytest.fixture
async def deployment(
    request: pytest.FixtureRequest,
    target: Target,
    module_server: tuple[int, Path, Tally] | None,
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
        if module_server is None:
            tally, root = Tally(), tmp_path
            port = await stack.enter_async_context(serve_here(target, tally, root))
        else:
            port, root, tally = module_server
            tally.reset()
            if not target.remote:  # the app reports to this process's metrics hook
                previous = set_metrics(TallyMetrics(tally))
                stack.callback(set_metrics, previous)
        base_url = f"http://127.0.0.1:{port}"
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=base_url, timeout=30))
        yield Deployment(target, port, tally, root, client)
