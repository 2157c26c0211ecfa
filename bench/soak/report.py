"""The soak's output: one table per scenario, each check marked, and the verdict.

A check is a named condition on a row ("finalizers == cycles"); a failed check is
printed as ``FAIL`` in its cell and listed at the end, and makes the run exit 1. A
peer's failed check, or a reference row's (see `Target.counted`), is printed as
``fail`` and does not count; so is a check a server's target names as not counted
(`Target.uncounted`: a case the README advises against there), which the table says
under its notes. A figure without a check is just printed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.soak.targets import uncounted


@dataclass
class Table:
    key: str  # a short name for the failure list
    title: str
    columns: list[str]
    notes: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)  # the checks shown, not counted

    def add(self, cells: list[str], raw: dict[str, Any] | None = None) -> None:
        self.rows.append(cells)
        if raw is not None:
            self.raw.append(raw)

    def extend(self, other: Table) -> None:
        """Append `other`'s rows, raw figures and failures (a scenario run on several
        servers at once, each into a table of its own, gathered in the servers' order)."""
        self.rows += other.rows
        self.raw += other.raw
        self.failures += other.failures
        self.remarks += [remark for remark in other.remarks if remark not in self.remarks]

    def check(self, row: str, what: str, ok: bool, shown: str, *, peer: bool = False) -> str:
        """`shown`, marked ``ok`` or ``FAIL``; a failure is remembered (a peer's is shown
        as ``fail`` and does not count: it is the comparison, not the verdict; so is a
        check the row's server does not count, `uncounted`, which `remarks` says)."""
        why = None if peer else uncounted(row, what)
        if why is not None:
            remark = f"{row}: '{what}' is shown, not counted ({why})"
            if remark not in self.remarks:
                self.remarks.append(remark)
            peer = True
        if ok:
            return f"{shown} ok"
        if peer:
            return f"{shown} fail"
        self.failures.append(f"{self.key} / {row}: {what} ({shown})")
        return f"{shown} FAIL"

    def checker(self, row: str, *, peer: bool = False) -> Callable[[str, bool, str], str]:
        """`check` for one row: ``check(what, ok, shown)``."""
        return functools.partial(self._check_row, row, peer)

    def _check_row(self, row: str, peer: bool, what: str, ok: bool, shown: str) -> str:
        return self.check(row, what, ok, shown, peer=peer)

    def render(self) -> str:
        widths = [len(column) for column in self.columns]
        for row in self.rows:
            widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=False)]
        lines = [f"\n## {self.title}", ""]
        lines += [f"  {note}" for note in [*self.notes, *self.remarks]]
        if self.notes or self.remarks:
            lines.append("")
        lines.append(
            "  " + "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))
        )
        lines.append("  " + "  ".join("-" * w for w in widths))
        for row in self.rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)))
        return "\n".join(lines)


def print_table(table: Table) -> None:
    print(table.render(), flush=True)


def save(tables: list[Table], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [
        {"title": t.title, "columns": t.columns, "rows": t.rows, "raw": t.raw, "remarks": t.remarks}
        for t in tables
    ]
    path.write_text(json.dumps(data, indent=1))


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
