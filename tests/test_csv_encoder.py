"""`CsvEncoder`: byte-for-byte what `csv.writer` writes, batch splits notwithstanding."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from streamfx._export.csv_encoder import CsvEncoder, neutralize, neutralize_rows

cells = (
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
    | st.integers()
    | st.floats()
    | st.none()
    | st.booleans()
)


def finite(cell: Any) -> Any:
    """streamfx's rule: a NaN or infinite float is written as None is (an empty cell)."""
    return None if isinstance(cell, float) and not math.isfinite(cell) else cell


def reference(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([list(map(finite, row)) for row in rows])
    return out.getvalue().encode("utf-8")


def encode_in(batches: list[list[Any]], encoder: CsvEncoder) -> bytes:
    return b"".join(encoder.encode(batch) for batch in batches) + encoder.finish()


@st.composite
def batched_rows(draw: st.DrawFn) -> tuple[int, list[list[list[Any]]]]:
    width = draw(st.integers(1, 5))
    row = st.lists(cells, min_size=width, max_size=width)
    return width, draw(st.lists(st.lists(row, max_size=4), max_size=5))


@given(batched_rows())
def test_property_sequence_rows_match_csv_writer(case: tuple[int, list[list[Any]]]) -> None:
    width, batches = case
    rows = [row for batch in batches for row in batch]
    fields = [f"c{i}" for i in range(width)]
    assert encode_in(batches, CsvEncoder(formula_guard=False)) == reference(rows)
    assert encode_in(batches, CsvEncoder(fields, formula_guard=False)) == reference([fields, *rows])
    assert encode_in(batches, CsvEncoder(fields)) == reference(
        [fields] + [neutralize(row) for row in rows]
    )


@given(batched_rows())
def test_property_dict_rows_match_csv_writer(case: tuple[int, list[list[Any]]]) -> None:
    width, batches = case
    fields = [f"c{i}" for i in range(width)]
    dict_batches = [[dict(zip(fields, row, strict=True)) for row in batch] for batch in batches]
    rows = [row for batch in batches for row in batch]
    expected = reference([fields, *rows]) if rows else b""
    assert encode_in(dict_batches, CsvEncoder(formula_guard=False)) == expected


@given(st.lists(st.integers() | st.floats() | st.decimals(), max_size=10))
def test_property_numbers_are_never_touched(numbers: list[Any]) -> None:
    assert all(a is b for a, b in zip(neutralize(numbers), numbers, strict=True))


def test_neutralize_only_leading_triggers_of_text() -> None:
    row = ["=a", "a=", " =a", "-", "+", "@", "\t", "\r", "", -1, Decimal("-2"), None]
    assert neutralize(row) == [
        "'=a", "a=", " =a", "'-", "'+", "'@", "'\t", "'\r", "", -1, Decimal("-2"), None
    ]  # fmt: skip


def test_neutralize_rows_returns_clean_batches_unchanged_and_fixes_dirty_columns() -> None:
    clean = [["Alice", 1, 2.5, None, True], ["bob", -1, -2.5, None, False]]
    assert neutralize_rows(clean) is clean
    dirty = [["Alice", "1", "x"], ["Bob", "-1", "=x"], ["Carol", "@", "y"]]
    assert neutralize_rows(dirty) == [
        ("Alice", "1", "x"),
        ("Bob", "'-1", "'=x"),
        ("Carol", "'@", "y"),
    ]
    mixed = [[1, Decimal("-1")], ["-1", "=1"]]  # mixed and unknown types go cell by cell
    assert neutralize_rows(mixed) == [(1, Decimal("-1")), ("'-1", "'=1")]


def test_transform_runs_first_and_may_turn_objects_into_rows() -> None:
    encoder = CsvEncoder(transform=lambda batch: [{"n": n, "sq": n * n} for n in batch])
    assert encode_in([[1, 2], [3]], encoder) == reference([["n", "sq"], [1, 1], [2, 4], [3, 9]])


def test_dataclass_and_model_rows_are_rows_of_their_fields_without_a_transform() -> None:
    # The JSON rules (streamfx._response.json) write a dataclass as an object of its
    # fields and a Pydantic model as model_dump(mode="json"); a CSV row of one is the
    # same dict. It was a TypeError ("rows are dicts or sequences").
    @dataclasses.dataclass
    class Point:
        x: int
        label: str

    class Dumps:  # what streamfx looks for in a Pydantic v2 model (Pydantic not needed)
        def __init__(self, n: int) -> None:
            self.n = n

        def model_dump(self, mode: str = "python") -> dict[str, Any]:
            assert mode == "json"
            return {"n": self.n, "at": "2024-01-01T00:00:00Z"}

    points = encode_in([[Point(1, "=a")], [Point(2, "b"), {"x": 3, "label": "c"}]], CsvEncoder())
    assert points == b"x,label\r\n1,'=a\r\n2,b\r\n3,c\r\n"
    dumps = encode_in([[Dumps(1), Dumps(2)]], CsvEncoder(["at", "n"]))
    assert dumps == b"at,n\r\n2024-01-01T00:00:00Z,1\r\n2024-01-01T00:00:00Z,2\r\n"
