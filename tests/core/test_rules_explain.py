"""explain() shows which condition decided a rule; explain_text() renders that compactly."""

from __future__ import annotations

from typing import Any

import pytest

from automate.rules import RuleError, apply, evaluate, explain, explain_text

ORDER_RULE = {
    "and": [
        {">=": [{"var": "order.total"}, 100]},
        {"in": [{"var": "order.country"}, ["US", "CA"]]},
        {"or": [{"var": "customer.vip"}, {"!": {"var": "customer.new"}}]},
    ]
}


def ops(node: dict[str, Any]) -> list[str]:
    return [child.get("op", child["kind"]) for child in node["args"]]


def test_failing_condition_is_the_one_marked_failed() -> None:
    tree = explain(ORDER_RULE, {"order": {"total": 120, "country": "FR"}, "customer": {"vip": True}})
    assert tree["op"] == "and"
    assert tree["passed"] is False and tree["value"] is False
    total, country, vip = tree["args"]
    assert (total["op"], total["passed"], total["evaluated"]) == (">=", True, True)
    assert total["args"][0] == {
        "kind": "op",
        "op": "var",
        "path": "$.and[0].>=[0]",
        "args": [
            {
                "kind": "literal",
                "path": "$.and[0].>=[0].var",
                "args": [],
                "value": "order.total",
                "passed": True,
                "evaluated": True,
            }
        ],
        "value": 120,
        "passed": True,
        "evaluated": True,
    }
    assert (country["op"], country["passed"], country["value"]) == ("in", False, False)
    assert country["args"][0]["value"] == "FR"
    assert country["path"] == "$.and[1]"
    # "and" stopped at the failure: the third condition is shown but was never evaluated
    assert vip["op"] == "or" and vip["evaluated"] is False
    assert vip["passed"] is None and vip["value"] is None
    assert all(child["evaluated"] is False for child in vip["args"])


def test_passing_rule() -> None:
    context = {"order": {"total": 100, "country": "US"}, "customer": {"vip": False, "new": False}}
    tree = explain(ORDER_RULE, context)
    assert tree["passed"] is True
    assert [child["passed"] for child in tree["args"]] == [True, True, True]
    or_node = tree["args"][2]
    assert [child["passed"] for child in or_node["args"]] == [False, True]  # vip falsy, !new truthy
    assert or_node["args"][1]["value"] is True


def test_or_stops_at_first_truthy() -> None:
    tree = explain({"or": [{"var": "a"}, {"var": "b"}, {"var": "c"}]}, {"a": 0, "b": "yes", "c": 1})
    assert tree["value"] == "yes"
    assert [child["evaluated"] for child in tree["args"]] == [True, True, False]


def test_if_marks_the_branch_taken() -> None:
    rule = {"if": [{"<": [{"var": "t"}, 0]}, "freezing", {"<": [{"var": "t"}, 20]}, "cold", "warm"]}
    tree = explain(rule, {"t": 10})
    assert tree["value"] == "cold"
    assert [child["evaluated"] for child in tree["args"]] == [True, False, True, True, False]
    assert [child["passed"] for child in tree["args"][:1]] == [False]
    assert explain(rule, {"t": 30})["args"][-1]["evaluated"] is True


def test_all_records_the_failing_element() -> None:
    items = [{"qty": q} for q in [5, 4, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 7, 8]]
    tree = explain({"all": [{"var": "items"}, {">=": [{"var": "qty"}, 1]}]}, {"items": items})
    assert tree["passed"] is False
    assert tree["iterations_total"] == 15
    assert tree["iterations_evaluated"] == 13  # stopped at index 12
    recorded = [step["index"] for step in tree["iterations"]]
    assert recorded == [*range(10), 12]  # the first ten, plus the element that decided
    last = tree["iterations"][-1]["node"]
    assert last["passed"] is False and last["args"][0]["value"] == 0
    assert tree["args"][1]["per_item"] is True


def test_some_records_the_matching_element() -> None:
    tree = explain({"some": [{"var": "xs"}, {">": [{"var": ""}, 2]}]}, {"xs": [1, 2, 3, 4]})
    assert tree["value"] is True
    assert [step["index"] for step in tree["iterations"]] == [0, 1, 2]
    assert tree["iterations"][-1]["node"]["passed"] is True


def test_map_beyond_shown_elements_still_evaluates() -> None:
    rule = {"map": [{"var": "xs"}, {"*": [{"var": ""}, 2]}]}
    data = {"xs": list(range(50))}
    tree = explain(rule, data, shown=3)
    assert tree["value"] == apply(rule, data)
    assert len(tree["iterations"]) == 3
    assert tree["iterations_evaluated"] == 50


def test_reduce_shows_accumulator_per_step() -> None:
    rule = {"reduce": [{"var": "xs"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 10]}
    tree = explain(rule, {"xs": [1, 2, 3]})
    assert tree["value"] == 16
    assert [step["node"]["value"] for step in tree["iterations"]] == [11, 13, 16]
    assert tree["args"][2]["value"] == 10


@pytest.mark.parametrize(
    ("rule", "data"),
    [
        (ORDER_RULE, {"order": {"total": 99}}),
        ({"missing_some": [1, ["a", "b"]]}, {"c": 1}),
        ({"if": [{"missing": ["vin"]}, {"cat": ["need ", {"var": "x"}]}, "ok"]}, {"x": [1, 2]}),
        ({"filter": [{"var": "xs"}, {"%": [{"var": ""}, 2]}]}, {"xs": [1, 2, 3, 4, 5]}),
        ([{"var": "a"}, {"+": [1, 2]}, "lit"], {"a": "A"}),
        (42, None),
    ],
)
def test_explain_value_matches_apply(rule: Any, data: Any) -> None:
    tree = explain(rule, data)
    assert tree["value"] == apply(rule, data)
    assert tree["passed"] is evaluate(rule, data)


def test_explain_validates() -> None:
    with pytest.raises(RuleError) as excinfo:
        explain({"and": [True, {"nope": 1}]}, {})
    assert excinfo.value.path == "$.and[1].nope"


def test_explain_text_shows_the_failure() -> None:
    text = explain_text(ORDER_RULE, {"order": {"total": 120, "country": "FR"}})
    assert text == (
        "✗ and -> false\n"
        "  ✓ >= (var order.total=120, 100) -> true\n"
        '  ✗ in (var order.country="FR", ["US", "CA"]) -> false\n'
        "  · or (var customer.vip, !…) (not evaluated)"
    )


def test_explain_text_ascii_and_from_tree() -> None:
    tree = explain({"or": [{"==": [{"var": "a"}, 1]}, {"!": [{"var": "b"}]}]}, {"a": 2, "b": 0})
    text = explain_text(tree, ascii=True)
    assert text == "[+] or -> true\n  [x] == (var a=2, 1) -> false\n  [+] ! (var b=0) -> true"
    assert text.isascii()


def test_explain_text_iterations() -> None:
    text = explain_text({"all": [{"var": "xs"}, {">": [{"var": ""}, 0]}]}, {"xs": [3, 0, 1]})
    assert text.splitlines() == [
        "✗ all (var xs=[3,0,1], >… per element) -> false",
        "  [0] ✓ > (var (data)=3, 0) -> true",
        "  [1] ✗ > (var (data)=0, 0) -> false",
        "  … 1 element(s) not evaluated",
    ]


def test_explain_text_nested_operators_indent() -> None:
    rule = {"if": [{"and": [{"var": "a"}, {"<": [1, {"+": [{"var": "b"}, 1]}]}]}, "yes", "no"]}
    lines = explain_text(rule, {"a": True, "b": 5}).splitlines()
    assert lines == [
        '✓ if (and…, "yes", "no") -> "yes"',
        "  ✓ and (var a=true, <…) -> true",
        "    ✓ < (1, +…) -> true",
        "      ✓ + (var b=5, 1) -> 6",
    ]


def test_explain_text_truncates_long_values() -> None:
    text = explain_text({"var": "s"}, {"s": "x" * 500}, width=20)
    shown = '"' + "x" * 18 + "…"  # 20 characters in all
    assert text == f"✓ var s={shown} -> {shown}"


def test_explain_text_survives_unrenderable_values() -> None:
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    assert explain_text({"var": "x"}, {"x": deep}) == "✓ var x=<list> -> <list>"
    assert explain_text({"var": "x"}, {"x": {1, 2}}) == "✓ var x=<set> -> <set>"
