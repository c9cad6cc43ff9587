"""check_json: what PostgreSQL JSONB can store as it is, refused with the path of the first bad value."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from collections import OrderedDict
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from automate.core.errors import AutomateError
from automate.core.jsonsafe import DEFAULT_MAX_DEPTH, JSONValueError, check_json

NAN, INF = float("nan"), float("inf")


class Colour(enum.Enum):
    RED = "red"
    BAD = NAN


@dataclasses.dataclass
class Point:
    x: float
    y: Any = None


REFUSED = [
    ({"v": NAN}, "payload.v", "NaN is not a JSON number"),
    ({"v": INF}, "payload.v", "Infinity is not a JSON number"),
    ({"v": -INF}, "payload.v", "-Infinity is not a JSON number"),
    ({"a": [1, 2, {"b": [0.5, NAN]}]}, "payload.a[2].b[1]", "NaN"),
    ({"a b": {"c.d": INF}}, 'payload["a b"]["c.d"]', "Infinity"),
    ({"t": (1, NAN)}, "payload.t[1]", "NaN"),
    ({"s": "a\x00b"}, "payload.s", "NUL character"),
    ({"k\x00": 1}, 'payload["k\\u0000"]', "the key contains a NUL character"),
    ({"s": "ok \ud800"}, "payload.s", "lone surrogate"),
    ({"\udfff": 1}, 'payload["\\udfff"]', "the key contains a lone surrogate"),
    ({"o": {1: "x"}}, "payload.o", "object keys must be strings, not int"),
    ({"o": {None: "x"}}, "payload.o", "object keys must be strings, not NoneType"),
    ({"n": 2**64}, "payload.n", "integer outside the 64-bit range"),
    ({"n": -(2**63) - 1}, "payload.n", "integer outside the 64-bit range"),
    ({"w": object()}, "payload.w", "a value of type object is not JSON-serialisable"),
    ({"w": {1, 2}}, "payload.w", "a value of type set is not JSON-serialisable"),
    ({"w": b"bytes"}, "payload.w", "a value of type bytes is not JSON-serialisable"),
    ({"e": Colour.BAD}, "payload.e", "NaN"),
    ({"p": Point(INF)}, "payload.p.x", "Infinity"),
    ({"p": Point(1.0, {"q": "\x00"})}, "payload.p.y.q", "NUL character"),
    ({"od": OrderedDict(z=NAN)}, "payload.od.z", "NaN"),
]


@pytest.mark.parametrize(("value", "path", "problem"), REFUSED)
def test_refused_with_the_path(value: Any, path: str, problem: str) -> None:
    with pytest.raises(JSONValueError) as err:
        check_json(value)
    assert err.value.path == path
    assert problem in err.value.problem
    assert str(err.value) == f"{path}: {err.value.problem}"


def test_the_error_is_a_value_error_and_an_automate_error() -> None:
    with pytest.raises(ValueError):
        check_json(NAN)
    assert issubclass(JSONValueError, AutomateError)


def test_the_message_never_contains_the_value() -> None:
    with pytest.raises(JSONValueError) as err:
        check_json({"token": "sk-live-SECRET\x00"})
    assert "SECRET" not in str(err.value)


@pytest.mark.parametrize(
    "value",
    [
        None, True, 0, -1.5, "", "héllo ✓ 🎉", 2**64 - 1, -(2**63), 1e308, -0.0,
        {}, [], (), {"a": [1, "b", None, False, 2.5, {"c": []}]},
        {"when": datetime.datetime(2024, 1, 2, 3, 4, 5), "day": datetime.date(2024, 1, 2)},
        {"at": datetime.time(12, 0), "id": uuid.UUID(int=7)},
        {"e": Colour.RED, "p": Point(1.5, [1, 2])},
        OrderedDict(a=1),
        {"raw": orjson.Fragment(b'{"x": 1}')},
    ],
)
def test_accepted(value: Any) -> None:
    check_json(value)
    orjson.dumps(value)  # and the encoder agrees


def _nested(levels: int) -> Any:
    value: Any = 1
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def test_depth_is_bounded() -> None:
    check_json(_nested(DEFAULT_MAX_DEPTH))
    with pytest.raises(JSONValueError, match=f"nested deeper than {DEFAULT_MAX_DEPTH} levels"):
        check_json(_nested(DEFAULT_MAX_DEPTH + 1))
    check_json(_nested(3), max_depth=3)
    with pytest.raises(JSONValueError) as err:
        check_json({"a": [[1]]}, path="output", max_depth=2)
    assert err.value.path == "output.a[0]"


def test_a_very_deep_value_is_refused_without_recursion() -> None:
    with pytest.raises(JSONValueError, match="nested deeper"):
        check_json(_nested(100_000))


def test_a_cycle_is_refused_not_walked_forever() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(JSONValueError, match="nested deeper"):
        check_json({"loop": loop})


def test_the_root_name_is_the_callers() -> None:
    with pytest.raises(JSONValueError) as err:
        check_json([NAN], path="steps[2].output")
    assert err.value.path == "steps[2].output[0]"
    with pytest.raises(JSONValueError) as err:
        check_json(NAN, path="output")
    assert err.value.path == "output"


def test_long_keys_are_shortened_in_the_path() -> None:
    with pytest.raises(JSONValueError) as err:
        check_json({"x " * 100: NAN})
    assert len(err.value.path) < 100 and err.value.path.endswith('..."]')


# -- against an independent oracle: orjson round trip, plus a recursive scan --------------------------

LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(), st.text(max_size=5), st.sampled_from(["\x00", "a\ud800", "\udc00b", "ok"]),
)
KEYS = st.one_of(st.text(max_size=4), st.sampled_from(["\x00", "\ud800", "k"]), st.integers(0, 3))
VALUES = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=12
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _has_nul(value: Any) -> bool:
    if isinstance(value, dict):
        return any(isinstance(k, str) and "\x00" in k for k in value) or any(map(_has_nul, value.values()))
    if isinstance(value, list):
        return any(map(_has_nul, value))
    return isinstance(value, str) and "\x00" in value


def _storable(value: Any, max_depth: int) -> bool:
    try:
        encoded = orjson.dumps(value)  # refuses surrogates, non-str keys, 65-bit ints
    except TypeError:
        return False
    # NaN and Infinity come back as null; nothing else changes in a round trip of plain JSON values.
    return orjson.loads(encoded) == value and not _has_nul(value) and _depth(value) <= max_depth


@given(VALUES, st.integers(min_value=1, max_value=4))
def test_agrees_with_the_encoder(value: Any, max_depth: int) -> None:
    try:
        check_json(value, max_depth=max_depth)
    except JSONValueError:
        accepted = False
    else:
        accepted = True
    assert accepted is _storable(value, max_depth)


def test_the_oracle_sees_each_problem() -> None:
    assert _storable({"v": [1.5, "ok"]}, 5)
    for bad in ({"v": NAN}, {"v": INF}, {"v": "\x00"}, {"\x00": 1}, {"v": "\ud800"}, {1: 1}, {"v": 2**64}):
        assert not _storable(bad, 5), bad
    assert not _storable([[1]], 1)
