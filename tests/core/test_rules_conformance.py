"""The official JSONLogic conformance suite, case by case, plus JavaScript semantics the suite leaves out."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from automate.rules import apply, evaluate, explain

# A copy of https://jsonlogic.com/tests.json kept in the repository (see tests/data/README.md).
SUITE = Path(__file__).resolve().parent.parent / "data" / "jsonlogic-tests.json"


def _load_cases() -> list[Any]:
    entries = json.loads(SUITE.read_text(encoding="utf-8"))
    cases: list[Any] = []
    section = "start"
    for entry in entries:
        if isinstance(entry, str):
            section = entry.lstrip("# ").strip() or section
            continue
        rule, data, expected = entry
        case_id = f"{len(cases):03d} {section[:40]}: {json.dumps(rule)[:60]}"
        cases.append(pytest.param(rule, data, expected, id=case_id))
    return cases


CASES = _load_cases()


def same(actual: Any, expected: Any) -> bool:
    """JSON equality that tells booleans from numbers and ints from floats (NaN equals NaN)."""
    if type(actual) is not type(expected):
        return False
    if isinstance(actual, list):
        return len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(same(actual[k], expected[k]) for k in actual)
    if isinstance(actual, float) and math.isnan(actual):
        return math.isnan(expected)
    return bool(actual == expected)


def test_the_suite_is_complete() -> None:
    assert len(CASES) == 277


def test_same_is_type_aware() -> None:
    assert not same(True, 1)
    assert not same(1, True)
    assert not same(0, False)
    assert not same(1.0, 1)
    assert not same([1], [True])
    assert same([1, "a", None], [1, "a", None])


@pytest.mark.parametrize(("rule", "data", "expected"), CASES)
def test_conformance(rule: Any, data: Any, expected: Any) -> None:
    actual = apply(rule, data)
    assert same(actual, expected), f"{rule!r} on {data!r}: got {actual!r}, expected {expected!r}"


@pytest.mark.parametrize(("rule", "data", "expected"), CASES)
def test_explain_agrees_with_apply(rule: Any, data: Any, expected: Any) -> None:
    tree = explain(rule, data)
    assert same(tree["value"], expected)
    assert tree["passed"] is evaluate(rule, data)


# -- JavaScript semantics beyond the suite ----------------------------------------------------------

LOOSE_EQUALITY = [
    (None, 0, False),
    (None, False, False),
    (None, "", False),
    (None, None, True),
    (0, "", True),
    (0, "0", True),
    ("", "0", False),
    (False, "0", True),
    (False, "", True),
    (True, "1", True),
    (True, 2, False),
    ([], False, True),
    ([], "", True),
    ([], 0, True),
    ([1], 1, True),
    ([1, 2], "1,2", True),
    ([None], "", True),
    ("1e1", 10, True),
    (" 3 ", 3, True),
    ("0x10", 16, True),
    ("abc", "abc", True),
    ("abc", 0, False),
    ([1, 2], [1, 2], True),  # contents, not identity (see coerce's module doc)
    ([1, 2], [1, "2"], False),  # ...compared strictly
    ({"a": 1}, {"a": 1}, True),
    ({"a": 1}, "[object Object]", True),
    (1.5, "1.5", True),
]


@pytest.mark.parametrize(("a", "b", "expected"), LOOSE_EQUALITY)
def test_loose_equality(a: Any, b: Any, expected: bool) -> None:
    assert apply({"==": [{"var": "a"}, {"var": "b"}]}, {"a": a, "b": b}) is expected
    assert apply({"==": [{"var": "b"}, {"var": "a"}]}, {"a": a, "b": b}) is expected
    assert apply({"!=": [{"var": "a"}, {"var": "b"}]}, {"a": a, "b": b}) is (not expected)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(1, 1.0, True), (1, True, False), (0, False, False), (None, None, True), ("1", 1, False), ([1], [1], True)],
)
def test_strict_equality(a: Any, b: Any, expected: bool) -> None:
    assert apply({"===": [{"var": "a"}, {"var": "b"}]}, {"a": a, "b": b}) is expected
    assert apply({"!==": [{"var": "a"}, {"var": "b"}]}, {"a": a, "b": b}) is (not expected)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"<": ["10", "9"]}, True),  # two strings compare as text
        ({"<": ["10", 9]}, False),  # otherwise as numbers
        ({"<": [None, 1]}, True),  # null is 0
        ({">=": [None, 0]}, True),
        ({"<": ["abc", 1]}, False),  # NaN never compares
        ({">=": ["abc", 1]}, False),
        ({"<": [[2], 3]}, True),  # [2] -> "2" -> 2
        ({"<": [False, True]}, True),
        ({"<=": [1, 1, 1]}, True),
        ({"<": [1, "2", 3]}, True),
        ({">": ["b", "a"]}, True),
    ],
)
def test_ordering(rule: Any, expected: bool) -> None:
    assert apply(rule) is expected


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"+": ["12abc", 1]}, 13),  # + and * use parseFloat: the numeric prefix
        ({"*": [" 2.5e1x", 2]}, 50),
        ({"+": [0.5, 0.25]}, 0.75),
        ({"-": ["3", "1"]}, 2),  # - uses ToNumber
        ({"-": [True, None]}, 1),
        ({"/": [1, 4]}, 0.25),
        ({"%": [-7, 3]}, -1),  # the sign follows the dividend, as in JavaScript
        ({"%": [7.5, 2]}, 1.5),
        ({"min": [3, "1", 2]}, 1),
        ({"max": [-1, None]}, 0),
        ({"+": [2**53, 2**53]}, 2.0**54),  # beyond the safe-integer range results are doubles
    ],
)
def test_arithmetic(rule: Any, expected: Any) -> None:
    assert same(apply(rule), expected)


@pytest.mark.parametrize(
    "rule",
    [{"+": ["abc"]}, {"-": ["1a", 1]}, {"*": [None, 2]}, {"/": [0, 0]}, {"%": [1, 0]}, {"max": [1, "x"]}],
)
def test_arithmetic_nan(rule: Any) -> None:
    result = apply(rule)
    assert isinstance(result, float) and math.isnan(result)
    assert evaluate(rule, {}) is False  # NaN is falsy


def test_division_by_zero_is_infinite() -> None:
    assert apply({"/": [1, 0]}) == math.inf
    assert apply({"/": [-1, 0]}) == -math.inf


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (123.456, "123.456"),
        (-0.0, "0"),
        (2**60, "1152921504606846976"),
        (True, "true"),
        (None, ""),  # join drops null
        ([1, [2, None, [3]]], "1,2,,3"),
        ({"a": 1}, "[object Object]"),
    ],
)
def test_cat_prints_like_javascript(value: Any, text: str) -> None:
    assert apply({"cat": [{"var": "v"}]}, {"v": value}) == text


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"substr": ["jsonlogic", 20]}, ""),
        ({"substr": ["jsonlogic", -20]}, "jsonlogic"),
        ({"substr": ["jsonlogic", 2, 0]}, ""),
        ({"substr": ["jsonlogic", 2, -20]}, ""),
        ({"substr": [12345, 1, 2]}, "23"),
        ({"substr": ["jsonlogic", "4"]}, "logic"),
    ],
)
def test_substr_edges(rule: Any, expected: str) -> None:
    assert apply(rule) == expected


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"in": [1, ["1", 2]]}, False),  # arrays search with ===
        ({"in": [[1], [[1], 2]]}, True),
        ({"in": [1, "a1b"]}, True),  # strings search for the needle's text
        ({"in": ["", ""]}, False),  # an empty haystack is falsy
        ({"in": ["a", None]}, False),
        ({"in": ["a", 5]}, False),
    ],
)
def test_in_edges(rule: Any, expected: bool) -> None:
    assert apply(rule) is expected


def test_in_with_a_literal_string_list_is_strict() -> None:
    rule = {"in": [{"var": "x"}, ["1", "a"]]}
    assert apply(rule, {"x": "1"}) is True
    assert apply(rule, {"x": 1}) is False
    assert apply(rule, {"x": ["1"]}) is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [({}, True), ({"a": 1}, True), ([], False), ([0], True), ("0", True), ("", False), (0.0, False), (None, False)],
)
def test_truthiness(value: Any, expected: bool) -> None:
    assert evaluate({"var": "v"}, {"v": value}) is expected
    assert apply({"!!": [{"var": "v"}]}, {"v": value}) is expected


@pytest.mark.parametrize(
    ("path", "data", "expected"),
    [
        ("items.1.sku", {"items": [{"sku": "a"}, {"sku": "b"}]}, "b"),
        ("items.01", {"items": ["a", "b"]}, None),  # not a canonical index
        ("items.-1", {"items": ["a", "b"]}, None),
        ("items.5", {"items": ["a", "b"]}, None),
        ("name.0", {"name": "bob"}, "b"),
        ("a.b", {"a": 5}, None),
        ("a", {"a": None}, None),
        ("__class__", {}, None),  # only dict keys and indexes: never attributes
        ("name.__class__", {"name": "bob"}, None),
        ("name.upper", {"name": "bob"}, None),
        ("items.__len__", {"items": [1]}, None),
    ],
)
def test_var_paths(path: str, data: Any, expected: Any) -> None:
    assert same(apply({"var": path}, data), expected)


def test_var_default_only_when_absent() -> None:
    assert apply({"var": ["a", 7]}, {"a": None}) is None  # present but null: no default
    assert apply({"var": ["a", 7]}, {"b": 1}) == 7
    assert apply({"var": ["a.b.c", {"cat": ["x", "y"]}]}, {}) == "xy"
    assert apply({"var": [{"cat": ["a", ".b"]}]}, {"a": {"b": 3}}) == 3


def test_var_reads_mappings_and_tuples() -> None:
    from types import MappingProxyType

    assert apply({"var": "a.1"}, MappingProxyType({"a": ("x", "y")})) == "y"


def test_missing_treats_empty_string_as_missing() -> None:
    assert apply({"missing": ["a", "b", "c"]}, {"a": "", "b": 0, "c": False}) == ["a"]


def test_merge_flattens_one_level() -> None:
    assert apply({"merge": [[1, [2]], 3, [[4]]]}) == [1, [2], 3, [4]]


def test_returned_arrays_are_fresh() -> None:
    rule = {"if": [True, [1, 2], []]}
    first = apply(rule)
    first.append(3)
    assert apply(rule) == [1, 2]


def test_iteration_over_non_arrays() -> None:
    assert apply({"map": [{"var": "x"}, 1]}, {"x": "abc"}) == []
    assert apply({"filter": [{"var": "x"}, True]}, {"x": {"a": 1}}) == []
    assert apply({"reduce": [{"var": "x"}, 1, 5]}, {"x": 3}) == 5
    assert apply({"reduce": [[1, 2], {"var": "accumulator"}]}) is None  # no initial value: null
    assert apply({"all": [{"var": "x"}, True]}, {}) is False
    assert apply({"some": [{"var": "x"}, True]}, {}) is False
    assert apply({"none": [{"var": "x"}, True]}, {}) is True


def test_nested_iteration_sees_only_the_element() -> None:
    data = {"orders": [{"lines": [1, 2]}, {"lines": [5]}], "limit": 3}
    total = {"reduce": [{"var": "lines"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}
    rule = {"map": [{"var": "orders"}, total]}
    assert apply(rule, data) == [3, 5]
    # the outer data is not visible inside the scope
    assert apply({"map": [{"var": "orders"}, {"var": "limit"}]}, data) == [None, None]
