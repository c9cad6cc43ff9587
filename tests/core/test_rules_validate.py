"""validate() refuses malformed rules with a RuleError naming the JSON path of the bad node."""

from __future__ import annotations

import math
from typing import Any

import pytest

from automate.core.rules import ARITY
from automate.rules import RuleError, RuleLimitError, apply, evaluate, validate


def error_of(rule: Any) -> RuleError:
    with pytest.raises(RuleError) as excinfo:
        validate(rule)
    return excinfo.value


def test_unknown_operator_path() -> None:
    err = error_of({"and": [{"==": [1, 1]}, {"foo": [1]}]})
    assert err.path == "$.and[1].foo"
    assert "unknown operator 'foo'" in str(err)
    assert str(err).endswith("at $.and[1].foo")


def test_unknown_operator_deep_path() -> None:
    rule = {"if": [{"var": "a"}, {"map": [{"var": "xs"}, {"!": {"log": 1}}]}, 0]}
    assert error_of(rule).path == "$.if[1].map[1].!.log"


@pytest.mark.parametrize(
    ("rule", "path", "fragment"),
    [
        ({"==": [1]}, "$.==", "exactly 2 arguments, got 1"),
        ({"==": [1, 2, 3]}, "$.==", "exactly 2 arguments, got 3"),
        ({"==": 1}, "$.==", "got 1"),  # a lone argument counts as one
        ({"!": []}, "$.!", "exactly 1 argument, got 0"),
        ({"!": [1, 2]}, "$.!", "got 2"),
        ({"<": [1, 2, 3, 4]}, "$.<", "2 to 3 arguments, got 4"),
        ({"var": ["a", 1, 2]}, "$.var", "0 to 2 arguments, got 3"),
        ({"and": []}, "$.and", "at least 1 argument"),
        ({"or": [{"map": [[1]]}]}, "$.or[0].map", "exactly 2 arguments, got 1"),
        ({"reduce": [[1], 2, 3, 4]}, "$.reduce", "2 to 3 arguments, got 4"),
        ({"missing_some": [1]}, "$.missing_some", "exactly 2 arguments, got 1"),
        ({"?:": [True, 1]}, "$.?:", "exactly 3 arguments, got 2"),
        ({"substr": "abc"}, "$.substr", "2 to 3 arguments, got 1"),
        ({"/": [1]}, "$./", "exactly 2 arguments, got 1"),
        ({"-": [1, 2, 3]}, "$.-", "1 to 2 arguments, got 3"),
    ],
)
def test_wrong_argument_count(rule: Any, path: str, fragment: str) -> None:
    err = error_of(rule)
    assert err.path == path
    assert fragment in err.reason


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"==": 1, "!=": 2}, "$"),
        ({"and": [True, {"a": 1, "b": 2}]}, "$.and[1]"),
        ({}, "$"),
        ({"if": [{}, 1, 2]}, "$.if[0]"),
    ],
)
def test_objects_need_exactly_one_key(rule: Any, path: str) -> None:
    err = error_of(rule)
    assert err.path == path
    assert "exactly one key" in err.reason


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"==": [{1: 2}, 1]}, "$.==[0]"),
        ({"cat": [{"a", "b"}]}, "$.cat[0]"),
        ({"cat": [b"bytes"]}, "$.cat[0]"),
        ({"cat": [object()]}, "$.cat[0]"),
        ({"+": [math.nan]}, "$.+[0]"),
        ({"+": [1, math.inf]}, "$.+[1]"),
    ],
)
def test_non_json_values(rule: Any, path: str) -> None:
    assert error_of(rule).path == path


@pytest.mark.parametrize(
    "rule",
    [
        None,
        True,
        "text",
        3.5,
        [1, {"var": "a"}],
        {"var": []},
        {"var": ""},
        {"if": []},
        {"merge": []},
        {"cat": []},
        {"missing": []},
        {"!": {"var": "x"}},
        {"map": [{"var": "xs"}, {"*": [{"var": ""}, 2]}]},
        {"reduce": [[1, 2], {"+": [{"var": "current"}, {"var": "accumulator"}]}]},
        {"<": [1, {"var": "x"}, 3]},
    ],
)
def test_valid_rules_pass(rule: Any) -> None:
    validate(rule)  # does not raise


def test_every_operator_accepts_its_minimum_and_maximum() -> None:
    for op, (low, high) in ARITY.items():
        validate({op: [1] * low})
        validate({op: [1] * (high if high is not None else low + 5)})
        if low > 0:
            with pytest.raises(RuleError):
                validate({op: [1] * (low - 1)})
        if high is not None:
            with pytest.raises(RuleError):
                validate({op: [1] * (high + 1)})


def test_apply_and_evaluate_validate_too() -> None:
    with pytest.raises(RuleError) as excinfo:
        apply({"and": [True, {"bogus": []}]}, {})
    assert excinfo.value.path == "$.and[1].bogus"
    with pytest.raises(RuleError):
        evaluate({"==": [1]}, {})


def test_invalid_rules_are_not_cached() -> None:
    for _ in range(2):  # the second call must fail again, not hit a cache
        with pytest.raises(RuleError):
            apply({"nope": 1}, {})


def test_no_python_code_paths() -> None:
    for name in ("__import__", "eval", "getattr", "exec", "__class__", "upper"):
        assert error_of({name: ["x"]}).path == f"$.{name}"


def test_rule_error_is_a_value_error_and_limit_error_is_a_rule_error() -> None:
    assert issubclass(RuleError, ValueError)
    assert issubclass(RuleLimitError, RuleError)
