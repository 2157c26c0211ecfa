"""The soak's runner (`bench.soak.__main__`): the faults scenario runs on every server at
once, and its table still lists the servers in their order, with every failure."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from bench.soak import __main__ as runner
from bench.soak import faults
from bench.soak.config import QUICK, Sizes
from bench.soak.report import Table
from bench.soak.targets import Server, Target


class FakeServer:
    """What the runner asks of a server around a scenario: its log since the last look."""

    def log_since(self) -> list[str]:
        return []


async def test_faults_run_on_every_server_at_once_and_list_them_in_order(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    targets = [Target(f"server {index}", "streamfx", ()) for index in range(3)]
    started = {target.name: asyncio.Event() for target in targets}
    finished: list[str] = []

    async def measure(target: Target, server: Server, sizes: Sizes, table: Table) -> None:
        started[target.name].set()
        # every server's case is under way before any ends (one after another would
        # wait here forever), and the last one ends first
        await asyncio.gather(*(event.wait() for event in started.values()))
        await asyncio.sleep(0.01 * (len(targets) - targets.index(target)))
        ok = target.name != "server 1"
        table.add([target.name, table.check(target.name, "the case", ok, "seen")])
        finished.append(target.name)

    monkeypatch.setattr(faults, "measure", measure)
    running = [(target, cast(Server, FakeServer())) for target in targets]
    table = faults.table(QUICK)
    async with asyncio.timeout(5):
        await runner.faults_everywhere(running, QUICK, table, 0.0)
    assert finished == ["server 2", "server 1", "server 0"]
    assert [row[0] for row in table.rows] == ["server 0", "server 1", "server 2"]
    assert table.failures == ["faults / server 1: the case (seen)"]
    assert "server 2: faults done" in capsys.readouterr().err


def test_a_table_extended_by_another_takes_its_rows_figures_and_failures() -> None:
    table, other = Table("t", "t", ["a"]), Table("t", "t", ["a"])
    table.add(["1"], {"a": 1})
    other.add([other.check("2", "two", False, "2")], {"a": 2})
    table.extend(other)
    assert table.rows == [["1"], ["2 FAIL"]]
    assert table.raw == [{"a": 1}, {"a": 2}]
    assert table.failures == ["t / 2: two (2)"]
