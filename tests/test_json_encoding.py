"""JSON array and NDJSON encoders, with orjson and with the standard library."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx._export.json_encoders import (
    USING_ORJSON,
    Dumps,
    JsonArrayEncoder,
    NdjsonEncoder,
    default_dumps,
    stdlib_dumps,
)

BACKENDS = pytest.mark.parametrize("dumps", [default_dumps, stdlib_dumps], ids=["default", "json"])


def test_orjson_is_used_when_installed() -> None:
    import orjson  # the dev extra installs it

    assert USING_ORJSON
    assert default_dumps is orjson.dumps


@BACKENDS
def test_array_across_batches(dumps: Dumps) -> None:
    encoder = JsonArrayEncoder(dumps)
    parts = [encoder.encode([1, "é"]), encoder.encode([]), encoder.encode([{"a": None}])]
    parts.append(encoder.finish())
    assert parts == [b'[1,"\xc3\xa9"', b"", b',{"a":null}', b"]"]
    assert JsonArrayEncoder(dumps).finish() == b"[]"


@BACKENDS
def test_ndjson(dumps: Dumps) -> None:
    assert NdjsonEncoder(dumps).encode(["a\nb", {"k": [1, 2]}]) == b'"a\\nb"\n{"k":[1,2]}\n'
    assert NdjsonEncoder(dumps).encode([]) == b""


def test_stdlib_refuses_nan_instead_of_writing_invalid_json() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        stdlib_dumps([float("nan")])


@BACKENDS
def test_unserializable_is_a_type_error(dumps: Dumps) -> None:
    with pytest.raises(TypeError):
        JsonArrayEncoder(dumps).encode([object()])


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
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
    for dumps in (default_dumps, stdlib_dumps):
        array = JsonArrayEncoder(dumps)
        data = b"".join(array.encode(batch) for batch in batches) + array.finish()
        assert json.loads(data) == items
        lines = b"".join(NdjsonEncoder(dumps).encode(batch) for batch in batches)
        assert [json.loads(line) for line in lines.split(b"\n")[:-1]] == items
    default = b"".join(NdjsonEncoder().encode(batch) for batch in batches)
    assert default == b"".join(NdjsonEncoder(default_dumps).encode(b) for b in batches)
