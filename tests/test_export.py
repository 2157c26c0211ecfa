"""`export`: JSON array, NDJSON and CSV bodies, driven by iterating the body directly."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime
import enum
import io
import json
import math
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamfx
from streamfx import BufferPolicy, StreamResponse, export, sse
from streamfx._export.export import CONTENT_TYPES
from streamfx.metrics import InMemoryMetrics, set_metrics
from tests._json_backends import BACKENDS, json_backend

ROWS = [
    {"id": 1, "name": "Zoë", "note": 'says "hi", then\nleaves'},
    {"id": 2, "name": "李雷", "note": "comma, and\r\nCRLF"},
    {"id": 3, "name": "plain", "note": ""},
]


async def arows(rows: list[Any]) -> AsyncIterator[Any]:
    for row in rows:
        yield row


async def chunks_of(response: StreamResponse) -> list[bytes]:
    return [chunk async for chunk in response.body]


async def body_of(response: StreamResponse) -> bytes:
    return b"".join(await chunks_of(response))


async def drain_into(response: StreamResponse, received: list[bytes]) -> None:
    async for chunk in response.body:
        received.append(chunk)


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["list", "async"])
async def test_json_is_one_array_of_the_items(source: str) -> None:
    items = ROWS if source == "list" else arows(ROWS)
    data = await body_of(export(items, "json"))
    assert json.loads(data) == ROWS
    assert "李雷".encode() in data  # UTF-8, not \\u escapes


async def test_json_of_nothing_is_an_empty_array() -> None:
    assert await body_of(export(arows([]), "json")) == b"[]"


async def test_ndjson_is_one_json_value_per_line() -> None:
    items: list[Any] = [*ROWS, [1, 2], "text\nwith newline", None]
    data = await body_of(export(arows(items), "ndjson"))
    lines = data.split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line) for line in lines[:-1]] == items


async def test_ndjson_of_nothing_is_empty() -> None:
    assert await body_of(export(arows([]), "ndjson")) == b""


async def test_csv_header_from_first_row_and_rfc4180_quoting() -> None:
    data = await body_of(export(arows(ROWS), "csv"))
    assert data.startswith(b"id,name,note\r\n")
    assert b'"says ""hi"", then\nleaves"' in data
    assert read_csv(data) == [
        ["id", "name", "note"],
        ["1", "Zoë", 'says "hi", then\nleaves'],
        ["2", "李雷", "comma, and\r\nCRLF"],
        ["3", "plain", ""],
    ]


async def test_csv_fields_select_and_order_columns_missing_keys_are_empty() -> None:
    rows = [{"a": 1, "b": 2, "c": 3}, {"c": 30, "a": 10}]
    data = await body_of(export(arows(rows), "csv", fields=["c", "a", "b"]))
    assert read_csv(data) == [["c", "a", "b"], ["3", "1", "2"], ["30", "10", ""]]
    data = await body_of(export(arows(rows), "csv", fields=["c", "a"]))
    assert read_csv(data) == [["c", "a"], ["3", "1"], ["30", "10"]]


async def test_csv_missing_key_after_inferred_header_is_an_empty_cell() -> None:
    rows = [{"a": 1, "b": 2}, {"b": 3}, {"a": None, "b": 4}]
    data = await body_of(export(arows(rows), "csv"))
    assert read_csv(data) == [["a", "b"], ["1", "2"], ["", "3"], ["", "4"]]


async def test_csv_single_field() -> None:
    data = await body_of(export(arows([{"a": 1}, {"a": None}, {}]), "csv", fields=["a"]))
    assert read_csv(data) == [["a"], ["1"], [""], [""]]


async def test_csv_extra_key_after_inferred_header_is_a_clear_error() -> None:
    rows = [{"a": 1, "b": 2}, {"a": 1, "b": 2, "surprise": 3}]
    with pytest.raises(ValueError, match=r"row 1 has keys .*'surprise'.*fields="):
        await body_of(export(arows(rows), "csv"))
    # the same with a missing key too (same length as the header, different keys)
    rows = [{"a": 1, "b": 2}, {"a": 1, "surprise": 3}]
    with pytest.raises(ValueError, match="surprise"):
        await body_of(export(arows(rows), "csv"))


async def test_csv_sequence_rows() -> None:
    rows = [(1, "x"), [2, "y, z"]]
    assert read_csv(await body_of(export(arows(rows), "csv", fields=("n", "s")))) == [
        ["n", "s"],
        ["1", "x"],
        ["2", "y, z"],
    ]
    assert read_csv(await body_of(export(arows(rows), "csv"))) == [["1", "x"], ["2", "y, z"]]


@pytest.mark.parametrize(
    ("rows", "error", "match"),
    [
        ([(1, 2), (1, 2, 3)], ValueError, "row 1 has 3 cells, expected 2"),
        ([(1, 2), "ab"], TypeError, "row 1 is a str"),
        ([(1, 2), {"a": 1, "b": 2}], TypeError, "row 1 is a mapping"),
        ([{"a": 1}, (1,)], TypeError, "row 1 is a tuple, but the rows started as dicts"),
        ([{}], ValueError, "empty dict"),
        ([{1: "x"}], TypeError, "column names must be str"),
        ([{1, 2}], TypeError, "rows are dicts or sequences"),
    ],
)
async def test_csv_bad_rows_are_clear_errors(
    rows: list[Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        await body_of(export(arows(rows), "csv"))


async def test_csv_of_nothing_is_the_header_or_nothing() -> None:
    assert await body_of(export(arows([]), "csv", fields=["a", "b"])) == b"a,b\r\n"
    assert await body_of(export(arows([]), "csv")) == b""


# -- formula injection ------------------------------------------------------------------

DANGEROUS = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")']


async def test_csv_formula_cells_are_neutralized_by_default_numbers_untouched() -> None:
    rows = [{"text": value, "int": -5, "float": -1.5} for value in DANGEROUS]
    rows.append({"text": "safe = fine", "int": 7, "float": 2.0})
    parsed = read_csv(await body_of(export(arows(rows), "csv")))
    assert parsed[0] == ["text", "int", "float"]
    assert [row[0] for row in parsed[1:]] == ["'" + value for value in DANGEROUS] + ["safe = fine"]
    assert {(row[1], row[2]) for row in parsed[1:-1]} == {("-5", "-1.5")}


async def test_csv_header_cells_are_neutralized_too() -> None:
    parsed = read_csv(await body_of(export(arows([{"=cmd": 1}]), "csv")))
    assert parsed == [["'=cmd"], ["1"]]


async def test_csv_formula_guard_can_be_turned_off() -> None:
    rows = [[value, -5] for value in DANGEROUS]
    parsed = read_csv(await body_of(export(arows(rows), "csv", csv_formula_guard=False)))
    assert parsed == [[value, "-5"] for value in DANGEROUS]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test runs as on an install with orjson, then as on one without it."""
    yield from json_backend(request.param, monkeypatch)


@dataclasses.dataclass
class Reading:
    _sensor: str
    at: datetime.datetime
    id: uuid.UUID


class Level(enum.Enum):
    HIGH = 3


class Row(pydantic.BaseModel):
    id: int
    tags: dict[int, str]


SAME_AS_SSE: list[Any] = [
    {"n": 2**70},
    {1: "a", 2.5: "b", None: "c", False: "d"},
    Reading("s1", datetime.datetime(2024, 1, 2, 3, 4, tzinfo=datetime.UTC), uuid.UUID(int=1)),
    Level.HIGH,
    Row(id=1, tags={7: "x"}),
    {"text": "é ✓ \u2028 \u2029 \x85"},
]


async def test_json_formats_write_exactly_what_sse_sends(backend: str) -> None:
    lines = (await body_of(export(arows(SAME_AS_SSE), "ndjson"))).split(b"\n")[:-1]
    sent = b"".join(await chunks_of(sse(arows(SAME_AS_SSE), heartbeat=None)))
    assert sent == b":\n\n" + b"".join(b"data: " + line + b"\n\n" for line in lines)
    array = await body_of(export(arows(SAME_AS_SSE), "json"))
    assert array == b"[" + b",".join(lines) + b"]"
    assert json.loads(lines[0]) == {"n": 2**70}
    assert json.loads(lines[1]) == {"1": "a", "2.5": "b", "null": "c", "false": "d"}
    assert json.loads(lines[2]) == {
        "_sensor": "s1",
        "at": "2024-01-02T03:04:00+00:00",
        "id": "00000000-0000-0000-0000-000000000001",
    }
    assert lines[3:5] == [b"3", b'{"id":1,"tags":{"7":"x"}}']


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_nan_and_infinity_are_null_in_every_format(backend: str, value: float) -> None:
    """JSON and NDJSON write ``null``; CSV an empty cell, as it writes None."""
    rows = [{"x": value, "y": 1.5}, {"x": None, "y": "info"}]
    assert await body_of(export(arows(rows), "json")) == (
        b'[{"x":null,"y":1.5},{"x":null,"y":"info"}]'
    )
    assert await body_of(export(arows(rows), "ndjson")) == (
        b'{"x":null,"y":1.5}\n{"x":null,"y":"info"}\n'
    )
    assert await body_of(export(arows(rows), "csv")) == b"x,y\r\n,1.5\r\n,info\r\n"
    sequences = [[value, "nan"], [-1.5, value]]
    assert await body_of(export(arows(sequences), "csv")) == b",nan\r\n-1.5,\r\n"


async def test_ndjson_is_one_line_per_item_however_lines_are_split(backend: str) -> None:
    items = [{"t": "a\u2028b"}, {"t": "c\u2029d\x85e"}, "\u2028"]
    text = (await body_of(export(arows(items), "ndjson"))).decode()
    assert [json.loads(line) for line in text.splitlines()] == items


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
async def test_unknown_item_types_name_the_type_and_serialize(backend: str, fmt: str) -> None:
    with pytest.raises(TypeError, match=r"Object of type Opaque .*pass serialize= to turn"):
        await body_of(export(arows([{"ok": 1}, Opaque()]), fmt))


class Opaque:
    def __init__(self, n: int = 0) -> None:
        self.n = n


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("json", b'[{"n":1},{"n":2}]'),
        ("ndjson", b'{"n":1}\n{"n":2}\n'),
        ("csv", b"n\r\n1\r\n2\r\n"),
    ],
)
async def test_serialize_turns_each_item_into_a_row(fmt: str, expected: bytes) -> None:
    items = [Opaque(1), Opaque(2)]
    assert await body_of(export(arows(items), fmt, serialize=vars)) == expected
    selected = await body_of(export(arows(items), fmt, serialize=vars, fields=["n"]))
    assert selected == expected


async def test_format_may_be_any_str_such_as_a_path_parameter() -> None:
    for fmt in ("json", "ndjson", "csv"):
        chosen: str = fmt  # a plain str, as a router hands it over
        response = export([{"a": 1}], chosen)
        assert response.header("content-type") == CONTENT_TYPES[fmt]
        await response.aclose()


async def test_json_formats_are_never_altered_by_the_guard() -> None:
    items = [{"t": value} for value in DANGEROUS]
    assert json.loads(await body_of(export(arows(items), "json"))) == items


# -- fields for the JSON formats ----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
async def test_json_fields_select_and_order_keys(fmt: str) -> None:
    items = [{"a": 1, "b": 2, "c": 3}, {"c": 4}]
    data = await body_of(export(arows(items), fmt, fields=["c", "a"]))
    text = data.decode()
    values = json.loads(text) if fmt == "json" else [json.loads(x) for x in text.splitlines()]
    assert values == [{"c": 3, "a": 1}, {"c": 4, "a": None}]
    assert text.index('"c"') < text.index('"a"')


async def test_json_fields_need_mapping_items() -> None:
    with pytest.raises(TypeError, match="needs mapping items, got list"):
        await body_of(export(arows([{"a": 1}, [1]]), "json", fields=["a"]))


# -- headers and call-time validation ---------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("json", "application/json"),
        ("ndjson", "application/x-ndjson"),
        ("csv", "text/csv; charset=utf-8"),
    ],
)
async def test_headers(fmt: Any, content_type: str) -> None:
    response = export([], fmt)
    assert response.status == 200
    assert response.header("Content-Type") == content_type
    assert response.header("Content-Disposition") is None
    await response.aclose()
    response = export([], fmt, filename="data 2024.csv")
    assert response.header("content-disposition") == 'attachment; filename="data 2024.csv"'
    await response.aclose()


async def test_non_ascii_filename_gets_rfc5987_form() -> None:
    response = export([], "csv", filename="résumé.csv")
    assert response.header("content-disposition") == (
        "attachment; filename=\"resume.csv\"; filename*=UTF-8''r%C3%A9sum%C3%A9.csv"
    )
    await response.aclose()


async def test_a_filename_that_cannot_be_sent_as_it_is_is_rewritten_not_refused() -> None:
    response = export([], "csv", filename="a\r\nSet-Cookie: x\u202egnp.csv")
    assert response.header("content-disposition") == (
        'attachment; filename="aSet-Cookie: xgnp.csv"'
    )
    await response.aclose()


class NeverIterated:
    """A source that fails the test if anything iterates it."""

    def __aiter__(self) -> AsyncIterator[Any]:
        raise AssertionError("the source must not be touched")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"format": "xml"}, ValueError, "unknown export format 'xml'"),
        ({"format": "JSON"}, ValueError, "unknown export format"),
        ({"format": None}, ValueError, "unknown export format None"),
        ({"format": "csv", "serialize": "vars"}, TypeError, "serialize must be callable"),
        ({"format": "csv", "fields": []}, ValueError, "at least one column"),
        ({"format": "csv", "fields": "ab"}, TypeError, "not a single str"),
        ({"format": "csv", "fields": ["a", "a"]}, ValueError, "repeated: \\['a'\\]"),
        ({"format": "csv", "fields": ["a", 1]}, TypeError, "field names must be str"),
        ({"format": "csv", "buffer": 128}, TypeError, "BufferPolicy"),
        ({"format": "csv", "buffer": BufferPolicy(8, "sliding")}, ValueError, "lose rows"),
        ({"format": "json", "buffer": BufferPolicy(8, "dropping")}, ValueError, "lose rows"),
    ],
)
def test_bad_arguments_raise_at_the_call(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        export(NeverIterated(), **kwargs)


@pytest.mark.parametrize("items", ["a,b", b"ab", {"a": 1}, 42])
def test_items_that_are_not_rows_are_refused(items: Any) -> None:
    with pytest.raises(TypeError, match="items must be"):
        export(items, "json")


def test_export_is_public() -> None:
    assert "export" in streamfx.__all__
    assert streamfx.export is export


# -- failure midway ---------------------------------------------------------------------


async def failing(count: int, exc: Exception) -> AsyncIterator[dict[str, int]]:
    for i in range(count):
        yield {"i": i}
        if i % 50 == 0:
            await asyncio.sleep(0)  # let some rows leave before the failure
    raise exc


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
async def test_source_failing_midway_raises_from_the_body(fmt: Any) -> None:
    received: list[bytes] = []
    response = export(failing(500, RuntimeError("database went away")), fmt)
    with pytest.raises(RuntimeError, match="database went away"):
        await drain_into(response, received)
    assert received, "rows before the failure were sent"
    data = b"".join(received)
    if fmt == "json":
        assert data.startswith(b"[")
        assert not data.endswith(b"]")
        with pytest.raises(json.JSONDecodeError):
            json.loads(data)


async def test_unencodable_item_midway_leaves_an_incomplete_array() -> None:
    async def items() -> AsyncIterator[object]:
        yield {"ok": 1}
        await asyncio.sleep(0)
        yield {"bad": object()}

    received: list[bytes] = []
    with pytest.raises(TypeError):
        await drain_into(export(items(), "json"), received)
    assert b"".join(received) == b'[{"ok":1}'


async def test_error_before_any_row_comes_with_the_first_chunk() -> None:
    """No prefix is sent ahead of the rows, so an adapter can still answer 500."""
    response = export(failing(0, RuntimeError("no connection")), "json")
    with pytest.raises(RuntimeError, match="no connection"):
        await anext(aiter(response.body))


# -- batching and flow ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
async def test_fast_source_leaves_in_few_large_chunks(fmt: Any) -> None:
    rows = [{"id": i, "name": f"row {i}"} for i in range(10_000)]
    chunks = await chunks_of(export(arows(rows), fmt))
    assert len(chunks) <= 100  # 10k rows: batches of up to 128 (the buffer)
    data = b"".join(chunks)
    if fmt == "json":
        assert json.loads(data) == rows
    elif fmt == "ndjson":
        assert len(data.splitlines()) == 10_000
    else:
        assert len(read_csv(data)) == 10_001


async def test_buffer_policy_bounds_the_batch() -> None:
    chunks = await chunks_of(export(arows(list(range(10))), "ndjson", buffer=BufferPolicy(4)))
    assert [chunk.count(b"\n") for chunk in chunks] == [4, 4, 2]


async def test_a_lone_row_leaves_at_once() -> None:
    release = asyncio.Event()

    async def slow() -> AsyncIterator[dict[str, int]]:
        yield {"n": 1}
        await release.wait()
        yield {"n": 2}

    body = aiter(export(slow(), "csv").body)
    assert await anext(body) == b"n\r\n1\r\n"  # header and the first row, not waiting
    release.set()
    assert await anext(body) == b"2\r\n"
    with pytest.raises(StopAsyncIteration):
        await anext(body)


async def test_early_close_runs_the_source_cleanup() -> None:
    cleaned = asyncio.Event()

    async def endless() -> AsyncIterator[dict[str, int]]:
        try:
            i = 0
            while True:
                yield {"i": i}
                i += 1
                await asyncio.sleep(0)
        finally:
            cleaned.set()

    response = export(endless(), "ndjson")
    body = aiter(response.body)
    await anext(body)
    await response.aclose()
    assert cleaned.is_set()


async def test_early_close_closes_a_sync_generator_too() -> None:
    closed = []

    def rows() -> Iterator[dict[str, int]]:
        try:
            for i in range(1_000_000):
                yield {"i": i}
        finally:
            closed.append(True)

    response = export(rows(), "csv")
    await anext(aiter(response.body))
    await response.aclose()
    assert closed == [True]


async def test_metrics_report_export_kind_and_name() -> None:
    hook = InMemoryMetrics()
    previous = set_metrics(hook)
    try:
        data = await body_of(export(arows(ROWS), "ndjson", name="/reports"))
    finally:
        set_metrics(previous)
    key = ("export", "/reports")
    assert hook.items[key] == len(ROWS)
    assert hook.bytes[key] == len(data)
    assert hook.outcomes["export", "/reports", "completed"] == 1


# -- properties ------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
column_names = st.lists(text, min_size=1, max_size=5, unique=True)


@st.composite
def csv_tables(draw: st.DrawFn) -> tuple[list[str], list[dict[str, str]]]:
    fields = draw(column_names)
    rows = draw(st.lists(st.fixed_dictionaries({f: text for f in fields}), max_size=30))
    return fields, rows


@settings(max_examples=150, deadline=None)
@given(items=st.lists(json_values, max_size=40), capacity=st.integers(1, 8))
async def test_property_json_and_ndjson_parse_back(items: list[Any], capacity: int) -> None:
    policy = BufferPolicy(capacity)
    assert json.loads(await body_of(export(arows(items), "json", buffer=policy))) == items
    data = await body_of(export(arows(items), "ndjson", buffer=policy))
    assert [json.loads(line) for line in data.split(b"\n")[:-1]] == items


@settings(max_examples=150, deadline=None)
@given(table=csv_tables(), capacity=st.integers(1, 8))
async def test_property_csv_parses_back(
    table: tuple[list[str], list[dict[str, str]]], capacity: int
) -> None:
    fields, rows = table
    policy = BufferPolicy(capacity)
    raw = await body_of(
        export(arows(rows), "csv", fields=fields, buffer=policy, csv_formula_guard=False)
    )
    assert read_csv(raw) == [fields] + [[row[f] for f in fields] for row in rows]

    guarded = await body_of(export(arows(rows), "csv", fields=fields, buffer=policy))

    def shown(cell: str) -> str:
        return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell

    assert read_csv(guarded) == [[shown(f) for f in fields]] + [
        [shown(row[f]) for f in fields] for row in rows
    ]
