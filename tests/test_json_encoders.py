"""JSON array and NDJSON export encoders, on both serializer back ends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx._export.json_encoders import JsonArrayEncoder, NdjsonEncoder, project
from streamfx._response.json import JsonSerializer

BACKENDS = pytest.mark.parametrize(
    "serializer",
    [JsonSerializer(use_orjson=True), JsonSerializer(use_orjson=False)],
    ids=["orjson", "json"],
)


@BACKENDS
def test_array_across_batches(serializer: JsonSerializer) -> None:
    encoder = JsonArrayEncoder(serializer)
    parts = [encoder.encode([1, "é"]), encoder.encode([]), encoder.encode([{"a": None}])]
    parts.append(encoder.encode([2**70]))
    parts.append(encoder.finish())
    assert parts == [b'[1,"\xc3\xa9"', b"", b',{"a":null}', b",1180591620717411303424", b"]"]
    assert JsonArrayEncoder(serializer).finish() == b"[]"


@BACKENDS
def test_ndjson(serializer: JsonSerializer) -> None:
    encoder = NdjsonEncoder(serializer)
    assert encoder.encode(["a\nb", {"k": [1, 2]}]) == b'"a\\nb"\n{"k":[1,2]}\n'
    assert encoder.encode([{1: "a"}]) == b'{"1":"a"}\n'
    assert encoder.encode([]) == b""


@BACKENDS
def test_transform_runs_before_encoding(serializer: JsonSerializer) -> None:
    select = project(["b", "a"])
    assert NdjsonEncoder(serializer, select).encode([{"a": 1, "b": 2, "c": 3}]) == (
        b'{"b":2,"a":1}\n'
    )
    array = JsonArrayEncoder(serializer, lambda batch: [x for x in batch if x])
    assert array.encode([0, 0]) == b""
    assert array.finish() == b"[]"


@BACKENDS
def test_refused_items_raise_and_return_nothing(serializer: JsonSerializer) -> None:
    array = JsonArrayEncoder(serializer)
    with pytest.raises(TypeError, match="Object of type object"):
        array.encode([1, object()])
    assert array.finish() == b"[]"  # the failed batch did not start the array


@BACKENDS
def test_nan_and_infinities_are_null(serializer: JsonSerializer) -> None:
    rows = [{"x": float("nan")}, {"x": float("inf")}, {"x": -float("inf")}]
    assert NdjsonEncoder(serializer).encode(rows) == b'{"x":null}\n' * 3
    array = JsonArrayEncoder(serializer)
    assert array.encode(rows) + array.finish() == b'[{"x":null},{"x":null},{"x":null}]'


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"])), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(batches=st.lists(st.lists(values, max_size=5), max_size=6))
def test_property_both_backends_write_the_same_documents(batches: list[list[Any]]) -> None:
    items = [item for batch in batches for item in batch]
    documents = []
    for serializer in (JsonSerializer(use_orjson=True), JsonSerializer(use_orjson=False)):
        array = JsonArrayEncoder(serializer)
        data = b"".join(array.encode(batch) for batch in batches) + array.finish()
        assert json.loads(data) == items
        lines = b"".join(NdjsonEncoder(serializer).encode(batch) for batch in batches)
        assert [json.loads(line) for line in lines.splitlines()] == items
        documents.append((json.loads(data), lines.count(b"\n")))
    assert documents[0] == documents[1]
