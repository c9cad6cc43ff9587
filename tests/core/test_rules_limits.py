"""Limits against abusive rules (depth, size, iteration work, built output, deep data) and the bounded cache."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from automate.core.rules import DEFAULT_LIMITS, Limits, cache_clear, cache_info, compile_rule, engine, get_compiled
from automate.rules import RuleLimitError, apply, evaluate, explain, explain_text, validate


def nested_not(depth: int) -> Any:
    rule: Any = True
    for _ in range(depth - 1):
        rule = {"!": [rule]}
    return rule


def nested_lists(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth - 1):
        value = [value]
    return value


# -- static limits ------------------------------------------------------------------------------------


def test_default_limits() -> None:
    assert (DEFAULT_LIMITS.max_depth, DEFAULT_LIMITS.max_nodes) == (64, 10_000)
    assert DEFAULT_LIMITS.max_iterations == 1_000_000


def test_depth_at_the_limit_is_fine() -> None:
    assert apply(nested_not(64)) is (63 % 2 == 0)


def test_depth_over_the_limit() -> None:
    with pytest.raises(RuleLimitError) as excinfo:
        validate(nested_not(65))
    assert "deeper than 64" in excinfo.value.reason
    assert excinfo.value.path.startswith("$.![0].![0]")


@pytest.mark.parametrize("entry", [validate, lambda r: apply(r, {}), lambda r: explain(r, {}), compile_rule])
def test_absurd_depth_is_a_limit_error_not_recursion_error(entry: Any) -> None:
    with pytest.raises(RuleLimitError):
        entry(nested_not(200_000))


def test_deep_literal_arrays_count_as_depth() -> None:
    with pytest.raises(RuleLimitError):
        validate({"merge": [nested_lists(100)]})


def test_node_count() -> None:
    validate({"cat": ["x"] * 9_998})  # 9_999 nodes with the operator
    with pytest.raises(RuleLimitError) as excinfo:
        validate({"cat": ["x"] * 10_000})
    assert "more than 10000 nodes" in str(excinfo.value)


def test_custom_static_limits() -> None:
    tight = Limits(max_depth=3, max_nodes=5)
    validate({"!": [{"!": [True]}]}, limits=tight)
    with pytest.raises(RuleLimitError):
        validate({"!": [{"!": [{"!": [True]}]}]}, limits=tight)
    with pytest.raises(RuleLimitError):
        apply({"cat": [1, 2, 3, 4, 5]}, {}, limits=tight)
    assert apply({"cat": [1, 2, 3, 4, 5]}, {}) == "12345"  # the default limits still allow it


# -- iteration budget ---------------------------------------------------------------------------------


def test_a_huge_array_is_refused_before_walking_it() -> None:
    started = time.perf_counter()
    with pytest.raises(RuleLimitError) as excinfo:
        apply({"map": [{"var": "xs"}, {"+": [{"var": ""}, 1]}]}, {"xs": [0] * 1_000_001})
    assert time.perf_counter() - started < 0.5
    assert "iteration budget of 1000000" in excinfo.value.reason
    assert excinfo.value.path == "$.map"


def test_nested_iteration_is_charged_in_total() -> None:
    limits = Limits(max_iterations=1_000)
    rule = {"map": [{"var": "rows"}, {"reduce": [{"var": ""}, {"+": [{"var": "accumulator"}, 1]}, 0]}]}
    assert apply(rule, {"rows": [[1] * 30] * 30}, limits=limits) == [30] * 30  # 30 + 900 visits
    with pytest.raises(RuleLimitError) as excinfo:
        apply(rule, {"rows": [[1] * 40] * 40}, limits=limits)  # 40 + 1600
    assert excinfo.value.path == "$.map[1].reduce"


@pytest.mark.parametrize("op", ["map", "filter", "all", "some", "none", "reduce"])
def test_every_iteration_operator_is_charged(op: str) -> None:
    limits = Limits(max_iterations=10)
    rule = {op: [{"var": "xs"}, True]}
    apply(rule, {"xs": [1] * 10}, limits=limits)
    with pytest.raises(RuleLimitError):
        apply(rule, {"xs": [1] * 11}, limits=limits)


def test_missing_and_in_scans_are_charged() -> None:
    limits = Limits(max_iterations=10)
    with pytest.raises(RuleLimitError):
        apply({"missing": {"var": "keys"}}, {"keys": ["k"] * 11}, limits=limits)
    with pytest.raises(RuleLimitError):
        apply({"in": [1, {"var": "xs"}]}, {"xs": [0] * 11}, limits=limits)
    assert apply({"in": [1, {"var": "xs"}]}, {"xs": [0] * 9 + [1]}, limits=limits) is True


def test_budget_is_per_evaluation() -> None:
    limits = Limits(max_iterations=100)
    compiled = compile_rule({"filter": [{"var": "xs"}, True]}, limits=limits)
    for _ in range(10):  # 60 visits each: would exceed 100 if the budget carried over
        assert len(compiled({"xs": [1] * 60})) == 60


def test_sibling_iterations_share_the_budget() -> None:
    limits = Limits(max_iterations=100)
    rule = {"and": [{"all": [{"var": "xs"}, True]}, {"all": [{"var": "xs"}, True]}]}
    assert evaluate(rule, {"xs": [1] * 50}, limits=limits) is True
    with pytest.raises(RuleLimitError):
        evaluate(rule, {"xs": [1] * 51}, limits=limits)


def test_explain_respects_the_budget() -> None:
    with pytest.raises(RuleLimitError):
        explain({"map": [{"var": "xs"}, 1]}, {"xs": [0] * 20}, limits=Limits(max_iterations=10))


def test_budgets_are_isolated_between_threads() -> None:
    limits = Limits(max_iterations=1_000)
    compiled = compile_rule({"filter": [{"var": "xs"}, {"!!": {"var": ""}}]}, limits=limits)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(200):
                assert len(compiled({"xs": [1] * 900})) == 900
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# -- output size --------------------------------------------------------------------------------------


def test_doubling_strings_stop_at_the_value_size_limit() -> None:
    rule = {"reduce": [{"var": "xs"}, {"cat": [{"var": "accumulator"}, {"var": "accumulator"}]}, "ab"]}
    assert len(apply(rule, {"xs": list(range(10))})) == 2 * 2**10
    started = time.perf_counter()
    with pytest.raises(RuleLimitError) as excinfo:
        apply(rule, {"xs": list(range(64))})
    assert time.perf_counter() - started < 1
    assert "'cat' built a value of size" in excinfo.value.reason


def test_doubling_arrays_stop_at_the_value_size_limit() -> None:
    rule = {"reduce": [{"var": "xs"}, {"merge": [{"var": "accumulator"}, {"var": "accumulator"}]}, [1]]}
    with pytest.raises(RuleLimitError) as excinfo:
        apply(rule, {"xs": list(range(64))})
    assert "'merge'" in excinfo.value.reason


def test_slowly_growing_strings_hit_the_total_output_budget() -> None:
    rule = {"reduce": [{"var": "xs"}, {"cat": [{"var": "accumulator"}, "xxxxxxxxxx"]}, ""]}
    limits = Limits(max_output=100_000)
    assert len(apply(rule, {"xs": [0] * 100}, limits=limits)) == 1000  # 50_500 characters built
    with pytest.raises(RuleLimitError) as excinfo:
        apply(rule, {"xs": [0] * 200}, limits=limits)  # 201_000 characters built
    assert "output budget" in excinfo.value.reason


# -- deep data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        {"cat": [{"var": "deep"}]},
        {"==": [{"var": "deep"}, {"var": "deep2"}]},
        {"===": [{"var": "deep"}, {"var": "deep2"}]},
        {"<": [{"var": "deep"}, 1]},
        {"in": [{"var": "deep"}, [{"var": "deep2"}]]},
    ],
)
def test_deeply_nested_data_is_a_limit_error(rule: Any) -> None:
    data = {"deep": nested_lists(50_000), "deep2": nested_lists(50_000)}
    with pytest.raises(RuleLimitError):
        apply(rule, data)
    with pytest.raises(RuleLimitError):
        explain_text(rule, data)


def test_moderately_nested_data_is_fine() -> None:
    data = {"a": nested_lists(150), "b": nested_lists(150)}
    assert apply({"===": [{"var": "a"}, {"var": "b"}]}, data) is True
    assert apply({"cat": [{"var": "a"}]}, data) == "1"


# -- the compiled-rule cache --------------------------------------------------------------------------


def test_equal_rules_share_one_compilation() -> None:
    cache_clear()
    first = {"and": [{"==": [{"var": "a"}, 1]}, {"in": [{"var": "b"}, ["x", "y"]]}]}
    second = json.loads(json.dumps(first))  # equal, but a different object
    assert get_compiled(first) is get_compiled(second)
    assert apply(second, {"a": 1, "b": "y"}) is True
    assert cache_info()["misses"] == 1
    assert get_compiled({"==": [{"var": "a"}, True]}) is not get_compiled({"==": [{"var": "a"}, 1]})


def test_cache_is_lru_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    cache_clear()
    monkeypatch.setattr(engine, "CACHE_SIZE", 3)
    rules = [{"+": [index, 1]} for index in range(4)]
    for rule in rules[:3]:
        apply(rule)
    evaluate(rules[0], {})  # now the most recently used (evaluate touches the cache like apply)
    apply(rules[3])  # evicts rules[1], the least recently used
    assert cache_info()["size"] == 3
    misses = cache_info()["misses"]
    apply(rules[0])
    apply(rules[2])
    assert cache_info()["misses"] == misses
    apply(rules[1])
    assert cache_info()["misses"] == misses + 1


def test_cache_is_bounded_in_key_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    cache_clear()
    monkeypatch.setattr(engine, "CACHE_KEY_BYTES", 1_000)
    for index in range(50):
        apply({"cat": [str(index), "x" * 100]})
    info = cache_info()
    assert 0 < info["key_bytes"] <= 1_000
    assert info["size"] < 10


def test_custom_limits_get_their_own_cache_entry() -> None:
    rule = {"map": [{"var": "xs"}, 1]}
    assert apply(rule, {"xs": [0] * 20}) == [1] * 20
    with pytest.raises(RuleLimitError):
        apply(rule, {"xs": [0] * 20}, limits=Limits(max_iterations=10))
    assert apply(rule, {"xs": [0] * 20}) == [1] * 20
