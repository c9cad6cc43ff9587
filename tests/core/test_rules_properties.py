"""Property tests: the compiled engine against a plain reference interpreter written here from the
JSONLogic reference implementation and the ECMAScript algorithms, plus invariants that must hold for
any rule (explain agrees with apply, the cache is transparent, key order does not matter).
"""

from __future__ import annotations

import math
import os
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from automate.core.rules import cache_clear, compile_rule
from automate.core.rules.coerce import number_to_string, to_number
from automate.rules import apply, evaluate, explain, explain_text

# -- the reference interpreter ------------------------------------------------------------------------
# Deliberately naive: one recursive function, JavaScript's algorithms written out step by step.

# StrDecimalLiteral: a decimal, or Infinity (Number("Infinity") and parseFloat("-Infinity") are infinite)
_NUMERIC = re.compile(r"[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|Infinity)")


def r_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "object"  # arrays and objects alike


def r_truthy(v: Any) -> bool:
    if isinstance(v, list):
        return len(v) > 0
    t = r_type(v)
    if t == "null":
        return False
    if t == "boolean":
        return v
    if t == "number":
        return not (v == 0 or math.isnan(v))
    if t == "string":
        return v != ""
    return True


def r_num_str(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == int(x) and abs(x) < 1e21:
        return str(int(x))
    d = Decimal(repr(float(x)))
    if 1e-6 <= abs(x) < 1e21:  # JavaScript switches to exponents below 1e-6
        return format(d, "f")
    return format(d, "e").replace("e-0", "e-").replace("e+0", "e+")


def r_str(v: Any) -> str:
    t = r_type(v)
    if t == "null":
        return "null"
    if t == "boolean":
        return "true" if v else "false"
    if t == "number":
        return r_num_str(v)
    if t == "string":
        return v
    if isinstance(v, list):
        return ",".join("" if x is None else r_str(x) for x in v)
    return "[object Object]"


def r_num(v: Any) -> float:
    t = r_type(v)
    if t == "null":
        return 0.0
    if t == "boolean":
        return 1.0 if v else 0.0
    if t == "number":
        return float(v)
    if t == "string":
        s = v.strip()
        if s == "":
            return 0.0
        return r_decimal(s) if _NUMERIC.fullmatch(s) else math.nan
    return r_num(r_str(v))


def r_decimal(s: str) -> float:
    return float(s.replace("Infinity", "inf"))  # Python's float() spells it "inf"


def r_parse_float(v: Any) -> float:
    s = r_str(v).lstrip()
    for end in range(len(s), 0, -1):
        if _NUMERIC.fullmatch(s[:end]):
            return r_decimal(s[:end])
    return math.nan


def r_prim(v: Any) -> Any:
    return r_str(v) if r_type(v) == "object" else v


def r_strict(a: Any, b: Any) -> bool:
    if r_type(a) != r_type(b):
        return False
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(r_strict, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(r_strict(a[k], b[k]) for k in a)
    return a is None or a == b


def r_loose(a: Any, b: Any) -> bool:
    ta, tb = r_type(a), r_type(b)
    if ta == tb:
        return r_strict(a, b)
    if "null" in (ta, tb):
        return False
    if ta == "number" and tb == "string":
        return a == r_num(b)
    if ta == "string" and tb == "number":
        return r_num(a) == b
    if ta == "boolean":
        return r_loose(r_num(a), b)
    if tb == "boolean":
        return r_loose(a, r_num(b))
    if ta == "object":
        return r_loose(r_prim(a), b)
    return r_loose(a, r_prim(b))


def r_less(a: Any, b: Any, or_equal: bool) -> bool:
    pa, pb = r_prim(a), r_prim(b)
    if isinstance(pa, str) and isinstance(pb, str):
        return pa <= pb if or_equal else pa < pb
    x, y = r_num(pa), r_num(pb)
    if math.isnan(x) or math.isnan(y):
        return False
    return x <= y if or_equal else x < y


def r_substr(s: str, start: Any, length: Any = None, has_length: bool = False) -> str:
    def integer(v: Any) -> float:
        n = r_num(v)
        return 0 if math.isnan(n) else (n if math.isinf(n) else math.trunc(n))

    size = len(s)
    begin = integer(start)
    begin = max(size + begin, 0) if begin < 0 else min(begin, size)
    count = integer(length) if has_length else size
    count = min(max(count, 0), size - begin)
    return s[int(begin) : int(begin + count)]


def r_var(data: Any, key: Any, default: Any = None) -> Any:
    if key is None or (key == "" and isinstance(key, str)):
        return data
    for part in r_str(key).split("."):
        if data is None:
            return default
        if isinstance(data, dict):
            if part not in data:
                return default
            data = data[part]
        elif isinstance(data, list | str) and re.fullmatch(r"0|[1-9]\d*", part) and int(part) < len(data):
            data = data[int(part)]
        else:
            return default
    return data


def r_missing(data: Any, args: list[Any]) -> list[Any]:
    keys = args[0] if args and isinstance(args[0], list) else args
    missing = []
    for key in keys:
        value = r_var(data, key)
        if value is None or (isinstance(value, str) and value == ""):
            missing.append(key)
    return missing


def r_apply(rule: Any, data: Any) -> Any:
    if isinstance(rule, list):
        return [r_apply(x, data) for x in rule]
    if not isinstance(rule, dict):
        return rule
    ((op, raw),) = rule.items()
    args = raw if isinstance(raw, list) else [raw]
    if op in ("if", "?:"):
        i = 0
        while i < len(args) - 1:
            if r_truthy(r_apply(args[i], data)):
                return r_apply(args[i + 1], data)
            i += 2
        return r_apply(args[i], data) if i == len(args) - 1 else None
    if op in ("and", "or"):
        value = None
        for arg in args:
            value = r_apply(arg, data)
            if r_truthy(value) != (op == "and"):
                return value
        return value
    if op in ("map", "filter", "all", "some", "none", "reduce"):
        items = r_apply(args[0], data)
        if op == "reduce":
            acc = r_apply(args[2], data) if len(args) > 2 else None
            if not isinstance(items, list):
                return acc
            for item in items:
                acc = r_apply(args[1], {"current": item, "accumulator": acc})
            return acc
        items = items if isinstance(items, list) else []
        results = [r_apply(args[1], item) for item in items]
        if op == "map":
            return results
        if op == "filter":
            return [item for item, r in zip(items, results, strict=True) if r_truthy(r)]
        if op == "all":
            return bool(items) and all(map(r_truthy, results))
        found = any(map(r_truthy, results))
        return found if op == "some" else not found
    v = [r_apply(a, data) for a in args]
    if op == "var":
        return data if not v else r_var(data, v[0], v[1] if len(v) > 1 else None)
    if op == "missing":
        return r_missing(data, v)
    if op == "missing_some":
        need, options = v
        options = options if isinstance(options, list) else [options]  # (JS would take a string's length)
        missing = r_missing(data, [options])
        return [] if r_less(need, len(options) - len(missing), True) else missing
    if op == "==":
        return r_loose(v[0], v[1])
    if op == "!=":
        return not r_loose(v[0], v[1])
    if op == "===":
        return r_strict(v[0], v[1])
    if op == "!==":
        return not r_strict(v[0], v[1])
    if op in ("<", "<="):
        ok = r_less(v[0], v[1], op == "<=")
        return ok and r_less(v[1], v[2], op == "<=") if len(v) == 3 else ok
    if op == ">":
        return r_less(v[1], v[0], False)
    if op == ">=":
        return r_less(v[1], v[0], True)
    if op == "!":
        return not r_truthy(v[0])
    if op == "!!":
        return r_truthy(v[0])
    if op == "+":
        return sum((r_parse_float(x) for x in v), 0.0)
    if op == "*":
        product = r_parse_float(v[0])
        for x in v[1:]:
            product *= r_parse_float(x)
        return product
    if op == "-":
        return -r_num(v[0]) if len(v) == 1 else r_num(v[0]) - r_num(v[1])
    if op == "/":
        a, b = r_num(v[0]), r_num(v[1])
        if b == 0:
            return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)
        return a / b
    if op == "%":
        a, b = r_num(v[0]), r_num(v[1])
        if b == 0 or math.isnan(a) or math.isnan(b) or math.isinf(a):
            return math.nan
        return a if math.isinf(b) else math.fmod(a, b)
    if op in ("min", "max"):
        nums = [r_num(x) for x in v]
        if any(map(math.isnan, nums)):
            return math.nan
        # Math.min/Math.max order -0 below +0 (Python's min/max would keep whichever zero came first)
        return (min if op == "min" else max)(nums, key=lambda x: (x, math.copysign(1.0, x)))
    if op == "cat":
        return "".join("" if x is None else r_str(x) for x in v)
    if op == "in":
        a, b = v
        if isinstance(b, str):
            return b != "" and r_str(a) in b
        return isinstance(b, list) and any(r_strict(a, x) for x in b)
    if op == "merge":
        out: list[Any] = []
        for x in v:
            out.extend(x if isinstance(x, list) else [x])
        return out
    if op == "substr":
        s = r_str(v[0])
        if len(v) == 3 and r_less(v[2], 0, False):
            tail = r_substr(s, v[1])
            return r_substr(tail, 0, len(tail) + r_num(v[2]), True)
        return r_substr(s, v[1], v[2] if len(v) == 3 else None, len(v) == 3)
    raise AssertionError(f"reference does not know {op}")


def same(a: Any, b: Any) -> bool:
    """Equal as JavaScript numbers and JSON values: NaN equals NaN, -0 is not +0 (``1 / -0`` is
    ``-Infinity``), never a boolean for a number."""
    if r_type(a) != r_type(b):
        return False
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if r_type(a) == "number":
        if math.isnan(a):
            return math.isnan(b)
        if a == 0:
            return b == 0 and math.copysign(1.0, a) == math.copysign(1.0, b)
    return a == b


# -- rule and data generators -------------------------------------------------------------------------

PRIMITIVES = [None, True, False, 0, 1, 2, -1, 3, 10, 0.5, -1.5, "", "0", "1", "2", " 3 ", "a", "b", "abc", "1e1", "-2", "Infinity", "-Infinity"]
primitive = st.sampled_from(PRIMITIVES)
literal_array = st.lists(primitive, max_size=3)
variable = st.sampled_from(["a", "b", "c.d", "xs", "xs.0", "xs.1", "nope", "c", "", "s"]).map(lambda p: {"var": p})
data_value = st.recursive(primitive, lambda inner: st.lists(inner, max_size=3), max_leaves=5)
data_strategy = st.fixed_dictionaries(
    {
        "a": data_value,
        "b": data_value,
        "c": st.fixed_dictionaries({"d": data_value}),
        "xs": st.lists(primitive, max_size=5),
        "s": st.sampled_from(["hello", "", "12", "a.b"]),
    }
)

BINARY = ["==", "!=", "===", "!==", "<", "<=", ">", ">=", "-", "/", "%", "in", "substr"]
NARY = ["and", "or", "+", "*", "min", "max", "cat", "merge"]
UNARY = ["!", "!!", "-", "+", "*"]
ITERATION = ["map", "filter", "all", "some", "none"]


def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    many = st.lists(children, min_size=1, max_size=4)
    return st.one_of(
        st.tuples(st.sampled_from(BINARY), children, children).map(lambda t: {t[0]: [t[1], t[2]]}),
        # a lone argument may be written bare, unless it is an array (which would be the argument list)
        st.tuples(st.sampled_from(UNARY), children).map(lambda t: {t[0]: [t[1]] if isinstance(t[1], list) else t[1]}),
        st.tuples(st.sampled_from(UNARY), children).map(lambda t: {t[0]: [t[1]]}),
        st.tuples(st.sampled_from(NARY), many).map(lambda t: {t[0]: t[1]}),
        st.tuples(st.sampled_from(["<", "<="]), children, children, children).map(lambda t: {t[0]: list(t[1:])}),
        st.tuples(children, children, children).map(lambda t: {"substr": list(t)}),
        st.lists(children, max_size=6).map(lambda xs: {"if": xs}),
        st.tuples(children, children, children).map(lambda t: {"?:": list(t)}),
        st.tuples(st.sampled_from(ITERATION), children, children).map(lambda t: {t[0]: [t[1], t[2]]}),
        st.tuples(st.sampled_from(ITERATION), children).map(lambda t: {t[0]: [{"var": "xs"}, t[1]]}),
        st.tuples(children, children, children).map(lambda t: {"reduce": list(t)}),
        st.tuples(children, children).map(lambda t: {"var": list(t)}),
        many.map(lambda xs: {"missing": xs}),
        st.tuples(children, children).map(lambda t: {"missing_some": list(t)}),
        many,  # arrays with logic inside
    )


rules = st.recursive(st.one_of(primitive, variable, literal_array), extend, max_leaves=14)


def examples(n: int) -> int:
    """``n`` examples, or the active profile's count when that is larger (``nox -s fuzz``)."""
    return max(n, settings.default.max_examples)


# RULES_PROPERTY_EXAMPLES overrides both (the seed stays derandomized unless HYPOTHESIS_PROFILE=fuzz).
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("RULES_PROPERTY_EXAMPLES", examples(600))),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Cases found by random search (the default run tests them every time), as (rule, data).
ANY_DATA = {"a": None, "b": None, "c": {"d": None}, "xs": [], "s": ""}
FOUND = [
    # -null is -0, and true / -0 is -Infinity: the engine turned -0 into the int 0 and answered Infinity.
    ({"/": [{"reduce": [None, None, {"==": [None, None]}]}, {"-": None}]}, ANY_DATA),
    # nox -s fuzz: * reads its operands with parseFloat, and parseFloat(-0) is 0 (via String(-0), "0").
    ({"*": {"-": None}}, {**ANY_DATA, "s": "hello"}),
    # nox -s fuzz: parseFloat(Infinity) reads "Infinity" and is Infinity (the reference said NaN)
    ({"substr": [None, {"if": []}, {"+": [{"/": [True, None]}]}]}, {**ANY_DATA, "s": "hello"}),
]
# The same negative-zero slip in every operator that can make or keep a -0.
NEGATIVE_ZERO = [
    {"/": [1, {"-": 0}]},
    {"/": [1, {"*": [-1, 0]}]},
    {"/": [1, {"*": [0, {"var": "b"}]}]},
    {"/": [1, {"-": [{"-": 0}, 0]}]},
    {"/": [1, {"%": [-4, 2]}]},
    {"/": [1, {"%": [{"-": 0}, 5]}]},
    {"/": [1, {"min": [0, {"-": 0}]}]},
    {"/": [1, {"max": [{"-": 0}, 0]}]},
    {"/": [1, {"max": [{"-": 0}, {"-": 0}]}]},
    {"/": [1, {"+": [{"-": 0}]}]},
    {"/": [1, {"*": [{"-": 0}]}]},
    {"/": [1, {"*": [{"-": 0}, -1]}]},
    {"/": [1, {"*": [-1, {"-": 0}]}]},
    {"/": [1, {"+": [{"-": 0}, {"-": 0}]}]},
    {"/": [1, {"*": ["-0", 1]}]},
    {"/": [1, {"-": "0"}]},
    {"/": [1, {"-": "-0"}]},
    {"-": False},
]


@PROPERTY_SETTINGS
@given(rule=rules, data=data_strategy)
@example(*FOUND[0])
@example(*FOUND[1])
@example(*FOUND[2])
def test_compiled_engine_matches_the_reference(rule: Any, data: Any) -> None:
    expected = r_apply(rule, data)
    actual = apply(rule, data)
    assert same(actual, expected), f"{rule!r} on {data!r}: engine {actual!r}, reference {expected!r}"


@PROPERTY_SETTINGS
@given(rule=rules, data=data_strategy)
def test_explain_and_evaluate_agree_with_apply(rule: Any, data: Any) -> None:
    value = apply(rule, data)
    tree = explain(rule, data)
    assert same(tree["value"], value)
    assert tree["passed"] is evaluate(rule, data) is r_truthy(value)
    text = explain_text(tree)
    assert text.splitlines()[0].startswith("✓" if tree["passed"] else "✗")


@settings(max_examples=examples(200), deadline=None)
@given(rule=rules, data=data_strategy)
def test_cache_is_transparent(rule: Any, data: Any) -> None:
    uncached = compile_rule(rule)(data)
    cache_clear()
    first = apply(rule, data)
    second = apply(rule, data)  # from the cache
    assert same(first, uncached) and same(second, uncached)


@settings(max_examples=examples(200), deadline=None)
@given(rule=rules, data=data_strategy)
# nox -s fuzz: the reduce scope {"current", "accumulator": NaN} came back as an object holding NaN
@example({"reduce": [[None], {"var": [None, None]}, {"+": None}]}, {**ANY_DATA, "s": "hello"})
def test_negations_and_symmetry(rule: Any, data: Any) -> None:
    other = {"var": "a"}
    assert apply({"!": [rule]}, data) is (not evaluate(rule, data))
    assert apply({"==": [rule, other]}, data) is apply({"==": [other, rule]}, data)
    assert apply({"!=": [rule, other]}, data) is (not apply({"==": [rule, other]}, data))
    assert apply({"===": [rule, rule]}, data) is not has_nan(apply(rule, data))  # NaN alone is unequal to itself


def has_nan(value: Any) -> bool:
    """A NaN anywhere inside: ``===`` compares arrays and objects by content, so it makes them unequal."""
    if isinstance(value, list):
        return any(map(has_nan, value))
    if isinstance(value, dict):
        return any(map(has_nan, value.values()))
    return isinstance(value, float) and math.isnan(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_to_string_round_trips(x: float) -> None:
    text = number_to_string(x)
    assert to_number(text) == x
    assert text == r_num_str(x) or (x == int(x) and abs(x) < 1e21)


@given(st.integers(min_value=-(2**53), max_value=2**53), st.integers(min_value=-(2**53), max_value=2**53))
def test_integer_arithmetic_matches_doubles(a: int, b: int) -> None:
    data = {"a": a, "b": b}
    for op, double in (("+", float(a) + float(b)), ("-", float(a) - float(b)), ("*", float(a) * float(b))):
        assert apply({op: [{"var": "a"}, {"var": "b"}]}, data) == double


@given(st.dictionaries(st.sampled_from(["==", "<", "and", "cat"]), st.just([1, 2]), min_size=1, max_size=1))
def test_key_order_does_not_matter(rule: dict[str, Any]) -> None:
    wrapped = {"if": [rule, {"var": "x"}, {"var": "y"}]}
    reordered = {"if": [rule, {"var": "x"}, {"var": "y"}]}
    assert apply(wrapped, {"x": 1, "y": 2}) == apply(reordered, {"y": 2, "x": 1})


@pytest.mark.parametrize("rule", NEGATIVE_ZERO)
def test_negative_zero_follows_javascript(rule: Any) -> None:
    data = {"b": -2}
    expected = r_apply(rule, data)
    assert same(apply(rule, data), expected) and same(explain(rule, data)["value"], expected)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [  # as node prints them: 1/-0, -3*0, Math.min(0,-0), Math.max(-0,0), -4%2, 0+-0, -null
        ({"/": [1, {"-": 0}]}, -math.inf),
        ({"/": [1, {"*": [-3, 0]}]}, -math.inf),
        ({"/": [1, {"min": [0, {"-": 0}]}]}, -math.inf),
        ({"/": [1, {"max": [{"-": 0}, 0]}]}, math.inf),
        ({"/": [1, {"%": [-4, 2]}]}, -math.inf),
        ({"/": [1, {"+": [0, {"-": 0}]}]}, math.inf),
        ({"/": [1, {"-": None}]}, -math.inf),
        ({"/": [1, {"*": [{"-": 0}, -1]}]}, -math.inf),  # parseFloat(-0) * -1 is 0 * -1
        ({"/": [1, {"*": [-1, {"-": 0}]}]}, -math.inf),
        ({"/": [1, {"*": ["-0", -1]}]}, math.inf),  # parseFloat("-0") is -0
    ],
)
def test_negative_zero_answers(rule: Any, expected: float) -> None:
    assert apply(rule, {}) == expected
    assert r_apply(rule, {}) == expected  # the reference agrees
