"""`JsonSerializer`: one set of JSON rules, the same with and without orjson.

Every rule is checked on both back ends: ``JsonSerializer(use_orjson=True)`` and
``JsonSerializer(use_orjson=False)`` (the standard library, as on an install without
the orjson extra); the property test at the end checks that they accept and refuse the
same values and write equal JSON, through each of the serializer's calls.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import json
import math
import sys
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfx._response.json import JsonSerializer, default_serializer

WITH_ORJSON = JsonSerializer(use_orjson=True)
STDLIB = JsonSerializer(use_orjson=False)
BOTH = pytest.mark.parametrize("serializer", [WITH_ORJSON, STDLIB], ids=["orjson", "json"])


def writes(serializer: JsonSerializer, value: Any) -> str:
    """What `serializer` writes for `value`, checked to be the same by all its calls."""
    text = serializer.dumps(value).decode()
    assert serializer.text(value) == text
    assert serializer.dumps([value, value]).decode() == f"[{text},{text}]"
    assert serializer.lines([value, value]).decode() == f"{text}\n{text}\n"
    assert serializer.texts([value, value]) == [text, text]
    return text


# -- choosing the back end ----------------------------------------------------------------


def test_orjson_is_used_when_installed() -> None:
    import orjson  # the dev extra installs it

    assert orjson
    assert JsonSerializer().uses_orjson
    assert WITH_ORJSON.uses_orjson
    assert not STDLIB.uses_orjson
    assert default_serializer() is default_serializer()
    assert default_serializer().uses_orjson


@pytest.fixture
def orjson_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)  # `import orjson` now raises


@pytest.mark.usefixtures("orjson_missing")
def test_without_orjson_the_standard_library_writes() -> None:
    assert not JsonSerializer().uses_orjson
    assert JsonSerializer().dumps({"k": [1, "é"]}) == '{"k":[1,"é"]}'.encode()
    with pytest.raises(ImportError):
        JsonSerializer(use_orjson=True)


# -- the rules, on both back ends ----------------------------------------------------------


@BOTH
def test_json_natives_compact_utf8(serializer: JsonSerializer) -> None:
    value = {"s": 'é✓"\\\n\t\x00', "i": -3, "f": 2.5, "b": [True, False, None], "t": (1, 2)}
    text = writes(serializer, value)
    assert json.loads(text) == {**value, "t": [1, 2]}
    assert " " not in text.replace("✓", "")
    assert "é✓" in text  # written as is, not \\u escapes


@BOTH
def test_ints_of_any_size(serializer: JsonSerializer) -> None:
    assert writes(serializer, {"n": 2**70}) == '{"n":1180591620717411303424}'
    assert (
        writes(serializer, [-(2**64), 2**64 - 1]) == "[-18446744073709551616,18446744073709551615]"
    )


@BOTH
def test_int_float_bool_and_none_keys_become_strings_as_json_writes_them(
    serializer: JsonSerializer,
) -> None:
    assert writes(serializer, {1: "a"}) == '{"1":"a"}'
    value = {2**70: 1, 1.5: 2, 1e-7: 3, True: 4, False: 5, None: 6, "s": 7}
    assert json.loads(writes(serializer, value)) == json.loads(json.dumps(value))


@BOTH
@pytest.mark.parametrize("key", [(1, 2), datetime.date(2020, 1, 1), uuid.UUID(int=1), b"k"])
def test_other_keys_are_refused(serializer: JsonSerializer, key: Any) -> None:
    with pytest.raises(TypeError, match=r"keys must be str.*serialize="):
        serializer.dumps({key: 1})


@BOTH
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_written_as_null(serializer: JsonSerializer, value: float) -> None:
    """As orjson and JavaScript's ``JSON.stringify`` write them, with and without orjson."""

    @dataclasses.dataclass
    class Reading:
        value: float

    class Big(float):
        pass

    cases: list[tuple[Any, str]] = [
        (value, "null"),
        ({"n": value}, '{"n":null}'),
        ([1, [value]], "[1,[null]]"),
        ((value, 2.5), "[null,2.5]"),
        ({"a": None, "b": [None, value]}, '{"a":null,"b":[null,null]}'),
        (
            [{"a": None, "b": 1.5}, {"a": None, "b": value}],
            ('[{"a":null,"b":1.5},{"a":null,"b":null}]'),
        ),
        (Reading(value), '{"value":null}'),
        ({"big": Big(value), "n": 2**70}, f'{{"big":null,"n":{2**70}}}'),
        ({value: value}, f'{{"{json.dumps(value)}":null}}'),  # a key: "NaN", "Infinity"
    ]
    for item, expected in cases:
        assert writes(serializer, item) == expected
        assert serializer.lines([{"ok": None}, item]) == f'{{"ok":null}}\n{expected}\n'.encode()


def test_a_nan_beside_a_cycle_is_still_a_cycle_error() -> None:
    looped: list[Any] = [math.nan]
    looped.append(looped)
    for serializer in (WITH_ORJSON, STDLIB):
        with pytest.raises(ValueError, match="Circular reference"):
            serializer.dumps(looped)


def test_a_nan_beside_an_unknown_type_is_still_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"Object of type object .*serialize="):
        STDLIB.dumps([math.nan, object()])


@BOTH
def test_null_and_the_word_null_are_not_mistaken_for_nan(serializer: JsonSerializer) -> None:
    value = {"a": None, "b": "null", "c": [None, 1.5, "nullable"]}
    assert json.loads(writes(serializer, value)) == value
    rows = [{"a": None, "b": 1.5, "c": "x"}, {"a": 1, "b": None, "null": None}]
    assert json.loads(serializer.dumps(rows)) == rows
    assert [json.loads(line) for line in serializer.lines(rows).splitlines()] == rows


@BOTH
def test_datetimes_are_iso_8601(serializer: JsonSerializer) -> None:
    odd_offset = datetime.timezone(datetime.timedelta(hours=-5, minutes=-30, seconds=-15))
    values: list[datetime.date | datetime.time] = [
        datetime.datetime(2024, 2, 29, 13, 5, 9, 120),
        datetime.datetime(2024, 2, 29, 13, 5, tzinfo=datetime.UTC),
        datetime.datetime(2024, 2, 29, 13, 5, tzinfo=odd_offset),
        datetime.datetime(1890, 1, 1, tzinfo=ZoneInfo("Europe/Amsterdam")),  # +00:19:32
        datetime.date(5, 1, 2),
        datetime.time(23, 59, 1, 5),
        datetime.time(8, tzinfo=datetime.UTC),
    ]
    assert json.loads(writes(serializer, values)) == [value.isoformat() for value in values]


class Plain(enum.Enum):
    A = "a"
    PAIR = (1, 2)


class Number(enum.IntEnum):
    ONE = 1


class Colour(enum.StrEnum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    _hidden: str = "kept"
    derived: int = dataclasses.field(default=3, init=False)
    when: datetime.date = datetime.date(2020, 1, 1)


@dataclasses.dataclass(slots=True, frozen=True)
class Frozen:
    point: Point
    tags: tuple[str, ...]


class Model(pydantic.BaseModel):
    id: uuid.UUID
    at: datetime.datetime
    colour: Colour
    mapping: dict[int, str]


class DuckModel:
    """Not Pydantic: anything with a ``model_dump`` is asked for its JSON form."""

    def model_dump(self, *, mode: str) -> dict[str, Any]:
        return {"mode": mode, "n": 2**70}


@BOTH
def test_uuid_enum_dataclass_and_models(serializer: JsonSerializer) -> None:
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert writes(serializer, ident) == '"12345678-1234-5678-1234-567812345678"'
    assert writes(serializer, [Plain.A, Plain.PAIR, Number.ONE, Colour.RED]) == (
        '["a",[1,2],1,"red"]'
    )
    point = Point(1)
    point.extra = "not a field"  # type: ignore[attr-defined]
    assert writes(serializer, point) == ('{"x":1,"_hidden":"kept","derived":3,"when":"2020-01-01"}')
    frozen = Frozen(Point(2, "h"), ("a", "b"))
    assert json.loads(writes(serializer, frozen)) == {
        "point": {"x": 2, "_hidden": "h", "derived": 3, "when": "2020-01-01"},
        "tags": ["a", "b"],
    }
    model = Model(id=ident, at=datetime.datetime(2020, 1, 1), colour=Colour.RED, mapping={1: "a"})
    assert json.loads(writes(serializer, model)) == model.model_dump(mode="json")
    assert writes(serializer, DuckModel()) == '{"mode":"json","n":1180591620717411303424}'


@BOTH
def test_subclasses_of_natives_are_written_as_their_base(serializer: JsonSerializer) -> None:
    pair = collections.namedtuple("pair", "a b")

    class Ratio(float):
        pass

    class Text(str):
        pass

    class Mapping(dict[str, Any]):
        pass

    value = [pair(1, 2), Ratio(0.5), Text("t"), Mapping(k=1), collections.OrderedDict(a=1)]
    assert writes(serializer, value) == '[[1,2],0.5,"t",{"k":1},{"a":1}]'


class Opaque:
    pass


@BOTH
def test_unknown_types_are_a_type_error_naming_the_type_and_serialize(
    serializer: JsonSerializer,
) -> None:
    for value in (Opaque(), {"a": [Opaque()]}, {1, 2}, b"bytes", Point, 1 + 2j):
        with pytest.raises(TypeError, match=r"Object of type \w+ is not JSON serializable"):
            serializer.dumps(value)
    with pytest.raises(TypeError, match=r"Opaque .*pass serialize= to turn"):
        serializer.lines([{"ok": 1}, Opaque()])


@BOTH
def test_a_container_holding_itself_is_a_value_error(serializer: JsonSerializer) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        serializer.dumps(loop)


@BOTH
def test_lone_surrogate_is_a_unicode_error(serializer: JsonSerializer) -> None:
    with pytest.raises(UnicodeEncodeError):
        serializer.dumps({"s": "\ud800"})


@BOTH
def test_line_separators_are_escaped(serializer: JsonSerializer) -> None:
    value = {"k\u2028": "a\u2028b\u2029c\x85d\x0be\x1cf é\u2019\xa0"}
    text = writes(serializer, value)
    assert "é\u2019\xa0" in text  # other characters beyond ASCII are written as they are
    assert text.splitlines() == [text]  # one line, however lines are split
    assert "\\u2028" in text and "\\u2029" in text and "\\u0085" in text
    assert json.loads(text) == value


# -- the two back ends agree -------------------------------------------------------------

odd_text = st.text(
    st.characters(exclude_categories=["Cs"]) | st.sampled_from('\u2028\u2029\x85\n"\\'),
    max_size=8,
)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | st.floats()  # NaN and infinities too
    | odd_text
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.times()
    | st.uuids()
    | st.sampled_from([Plain.A, Plain.PAIR, Number.ONE, Colour.RED])
    | st.builds(Point, st.integers(), odd_text)
    | st.builds(Opaque)
    | st.just("\ud800")  # a lone surrogate
)
keys = odd_text | st.integers() | st.floats() | st.booleans() | st.none() | st.uuids()
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=3)
    ),
    max_leaves=8,
)


def refuse(token: str) -> None:
    raise AssertionError(f"not JSON: {token}")


def outcome(call: Any, argument: Any) -> tuple[str, Any]:
    try:
        result = call(argument)
        if isinstance(result, list):  # texts(): str, encoded by the caller
            result = "\n".join(result)
        if isinstance(result, str):
            result = result.encode()
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)
    # Compare parsed JSON; strict JSON only: a NaN token fails the test.
    parsed = [json.loads(line, parse_constant=refuse) for line in result.split(b"\n") if line]
    assert b"\xe2\x80\xa8" not in result and b"\xe2\x80\xa9" not in result
    assert b"\xc2\x85" not in result
    return "ok", parsed


@settings(max_examples=400, deadline=None)
@given(st.lists(values, min_size=1, max_size=4))
def test_property_both_back_ends_accept_refuse_and_write_the_same(batch: list[Any]) -> None:
    for name in ("dumps", "text", "dumps-list", "lines", "texts"):
        argument = batch[0] if name in ("dumps", "text") else batch
        name = name.removesuffix("-list")
        fast = outcome(getattr(WITH_ORJSON, name), argument)
        slow = outcome(getattr(STDLIB, name), argument)
        assert fast == slow, name
