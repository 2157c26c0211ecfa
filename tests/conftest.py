"""Shared test fixtures: every async test fails on a task left pending or an error
that the event loop only logs (such as "Task was destroyed but it is pending"); every
test fails on an object whose finalizer complains once the test is over (an unclosed
file's ``ResourceWarning``, an error as every warning is here); and `metrics`, the
process-wide metrics hook recording for one test.

Each test ends with a full garbage collection inside its event loop (so that a task
dropped by the test is destroyed, and logged, while the test is still the one to
blame), then, once every other teardown has run, a second one with the finalizers'
complaints turned into a failure of that test's teardown, then `gc.freeze()`: what
survived is moved out of the collector's sight, so the next test's collection scans
only what that test made. Without the freeze every collection walks the whole heap of
the session (the frameworks, hypothesis's caches), about a quarter of a second per test
by the end of the suite.

The second collection is the one that sees a leaked file: pytest's log capture holds
the records of the test, and a logged exception's traceback holds the frames (and the
files) of the code that raised it, until pytest's own teardown ends. Collected any
earlier, such a file is still reachable; frozen, it is never collected again, and a
later test that unfreezes is blamed for it. A file that is still unreachable only after
the test's teardown is caught at the end of the session (`pytest_sessionfinish`), which
then fails without knowing the test.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import traceback
import tracemalloc
import warnings
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest

from streamfx.metrics import InMemoryMetrics, set_metrics
from tests._broadcast_metrics import Subscriptions


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    logged: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: logged.append(context))
    try:
        yield
        for _ in range(5):
            await asyncio.sleep(0)
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert not pending, f"tasks left pending: {pending}"
        assert not logged, f"the event loop logged errors: {logged}"
    finally:
        loop.set_exception_handler(previous)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """After the test's teardown (pytest's included): collect, fail the teardown on
    every finalizer that complained, then freeze what survived (see the docstring)."""
    try:
        yield
    finally:
        complaints = collect_garbage()
        gc.freeze()
    raise_complaints(complaints)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The garbage the per-test collections could not see yet: fail the session on it."""
    gc.unfreeze()
    complaints = collect_garbage()
    if not complaints:
        return
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    title = "finalizers complained after every test's teardown (the test is not known)"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        print(title, *complaints, sep="\n")
        return
    reporter.write_line("")  # after the progress dots
    reporter.write_sep("=", title)
    for complaint in complaints:
        reporter.write_line(complaint)


def collect_garbage() -> list[str]:
    """A full collection; what the finalizers raised (``sys.unraisablehook``), formatted."""
    complaints: list[str] = []

    def keep(unraisable: sys.UnraisableHookArgs) -> None:
        summary = f"{unraisable.err_msg or 'Exception ignored in'}: {unraisable.object!r}"
        details = traceback.format_exception(
            unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback
        )
        complaints.append(summary + "\n\n" + "".join(details))

    previous = sys.unraisablehook
    sys.unraisablehook = keep
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return complaints


def raise_complaints(complaints: list[str]) -> None:
    """Each complaint as pytest reports one (a `PytestUnraisableExceptionWarning`, so a
    ``filterwarnings`` mark applies); the ones the filters make errors are raised."""
    errors: list[Exception] = []
    for complaint in complaints:
        try:
            warnings.warn(pytest.PytestUnraisableExceptionWarning(complaint), stacklevel=1)
        except pytest.PytestUnraisableExceptionWarning as error:
            errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup("finalizers complained after the test", errors)


@pytest.fixture
def metrics() -> Iterator[InMemoryMetrics]:
    """The process-wide hook, recording, for the length of one test."""
    hook = InMemoryMetrics()
    previous = set_metrics(hook)
    try:
        yield hook
    finally:
        set_metrics(previous)


@pytest.fixture
async def subscriptions() -> AsyncIterator[Subscriptions]:
    """The process-wide hook, counting broadcast subscribers (thread-safe), for the
    length of one test."""
    watch = Subscriptions(asyncio.get_running_loop())
    previous = set_metrics(watch)
    try:
        yield watch
    finally:
        set_metrics(previous)


@pytest.fixture
def traced() -> Iterator[None]:
    """tracemalloc on for the test (memory bounds measured with it), off after."""
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
