"""bench/soak/report.py: a check a server's target does not count (`Target.uncounted`)."""

from __future__ import annotations

from bench.soak.report import Table
from bench.soak.targets import TARGETS


def test_a_check_the_server_does_not_count_is_shown_and_said_but_fails_nothing() -> None:
    (waitress,) = [target for target in TARGETS if target.uncounted]
    row, check = waitress.name, "healthy p99 within 1.5x"
    assert check.startswith(waitress.uncounted)
    table = Table("readers", "readers", ["server", "ratio", "evicted"])
    table.add([row, table.check(row, check, False, "4.50"), table.check(row, check, True, "1.2")])
    assert table.rows == [[row, "4.50 fail", "1.2 ok"]]
    assert table.failures == []
    remark = f"{row}: '{check}' is shown, not counted ({waitress.uncounted_why})"
    assert table.remarks == [remark]  # once, however many times it is checked
    assert remark in table.render()
    # the server's other checks count, and the same check counts on another server
    assert table.check(row, "every stalled client evicted", False, "199") == "199 FAIL"
    assert table.check("wsgi / gunicorn", check, False, "1.60") == "1.60 FAIL"
    assert table.failures == [
        f"readers / {row}: every stalled client evicted (199)",
        f"readers / wsgi / gunicorn: {check} (1.60)",
    ]


def test_a_table_extended_by_another_takes_its_remarks_once() -> None:
    (waitress,) = [target for target in TARGETS if target.uncounted]
    table, other = Table("t", "t", ["a"]), Table("t", "t", ["a"])
    table.check(waitress.name, "healthy p99 within 3x (short run)", False, "4")
    other.check(waitress.name, "healthy p99 within 3x (short run)", False, "5")
    table.extend(other)
    assert len(table.remarks) == 1
    assert table.failures == []
