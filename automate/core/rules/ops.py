"""The JSONLogic operators, as functions of already-evaluated argument values.

Every operator that evaluates all of its arguments (everything except ``if``/``?:``, ``and``/``or`` and
the iteration operators) is a function ``(values, data, path) -> value`` in ``EAGER``. The compiler's
general path and ``explain`` both call these, so both agree on semantics; the compiler adds fast paths
for common shapes on top. Nothing here touches attributes or calls code named by a rule: data is read
only through ``dict`` keys and sequence indexes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from automate.core.rules.coerce import (
    MAX_SAFE,
    is_array,
    less,
    less_equal,
    loose_eq,
    norm,
    parse_float,
    strict_eq,
    to_number,
    to_string,
    truthy,
)
from automate.core.rules.limits import SMALL_OUTPUT, charge_items, charge_output

__all__ = ["ARITY", "CONTROL", "EAGER", "ITERATION", "MISSING", "lookup", "split_path"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()
"""JavaScript's ``undefined``: what a lookup of an absent key yields."""

ARITY: Final[dict[str, tuple[int, int | None]]] = {
    "var": (0, 2),
    "missing": (0, None),
    "missing_some": (2, 2),
    "if": (0, None),
    "?:": (3, 3),
    "==": (2, 2),
    "===": (2, 2),
    "!=": (2, 2),
    "!==": (2, 2),
    ">": (2, 2),
    ">=": (2, 2),
    "<": (2, 3),
    "<=": (2, 3),
    "!": (1, 1),
    "!!": (1, 1),
    "and": (1, None),
    "or": (1, None),
    "+": (1, None),
    "-": (1, 2),
    "*": (1, None),
    "/": (2, 2),
    "%": (2, 2),
    "min": (1, None),
    "max": (1, None),
    "cat": (0, None),
    "substr": (2, 3),
    "in": (2, 2),
    "merge": (0, None),
    "map": (2, 2),
    "filter": (2, 2),
    "reduce": (2, 3),
    "all": (2, 2),
    "some": (2, 2),
    "none": (2, 2),
}
"""Every known operator with its (fewest, most) arguments; ``None`` means no upper bound."""

CONTROL: Final = frozenset({"if", "?:", "and", "or"})
"""Operators that evaluate their arguments lazily, left to right."""
ITERATION: Final = frozenset({"map", "filter", "reduce", "all", "some", "none"})
"""Operators whose second argument is evaluated once per array element, with the element as data."""


# -- data access -------------------------------------------------------------------------------------


def _index(part: str, size: int) -> int | None:
    if part.isascii() and part.isdigit() and (part == "0" or part[0] != "0"):
        index = int(part)
        if index < size:
            return index
    return None


def lookup(data: Any, parts: Sequence[str]) -> Any:
    """Follow a split dotted path through dicts, arrays and strings; ``MISSING`` if it leads nowhere."""
    for part in parts:
        kind = type(data)
        if kind is dict:
            data = data.get(part, MISSING)
            if data is MISSING:
                return MISSING
        elif data is None:
            return MISSING
        elif kind is list or kind is tuple or kind is str:
            index = _index(part, len(data))
            if index is None:
                return MISSING
            data = data[index]
        elif isinstance(data, Mapping):
            if part not in data:
                return MISSING
            data = data[part]
        elif isinstance(data, Sequence) and not isinstance(data, bytes | bytearray):
            index = _index(part, len(data))
            if index is None:
                return MISSING
            data = data[index]
        else:
            return MISSING
    return data


def split_path(path: Any) -> list[str] | None:
    """The parts of a ``var`` path, or ``None`` when the path means the whole data (null or "")."""
    if path is None or (type(path) is str and path == ""):
        return None
    return to_string(path).split(".")


def op_var(values: list[Any], data: Any, path: str) -> Any:
    if not values:
        return data
    parts = split_path(values[0])
    if parts is None:
        return data
    found = lookup(data, parts)
    if found is MISSING:
        return values[1] if len(values) > 1 else None
    return found


def op_missing(values: list[Any], data: Any, path: str) -> list[Any]:
    keys = values[0] if values and is_array(values[0]) else values
    charge_items(len(keys), "missing", path)
    missing = []
    for key in keys:
        value = op_var([key], data, path)
        if value is None or value == "":
            missing.append(key)
    return missing


def op_missing_some(values: list[Any], data: Any, path: str) -> list[Any]:
    need, options = values
    if not is_array(options):
        options = [options]
    missing = op_missing([options], data, path)
    if less_equal(need, len(options) - len(missing)):
        return []
    return missing


# -- logic and comparison ----------------------------------------------------------------------------


def op_eq(values: list[Any], data: Any, path: str) -> bool:
    return loose_eq(values[0], values[1])


def op_ne(values: list[Any], data: Any, path: str) -> bool:
    return not loose_eq(values[0], values[1])


def op_strict_eq(values: list[Any], data: Any, path: str) -> bool:
    return strict_eq(values[0], values[1])


def op_strict_ne(values: list[Any], data: Any, path: str) -> bool:
    return not strict_eq(values[0], values[1])


def op_lt(values: list[Any], data: Any, path: str) -> bool:
    if len(values) == 3:
        return less(values[0], values[1]) and less(values[1], values[2])
    return less(values[0], values[1])


def op_le(values: list[Any], data: Any, path: str) -> bool:
    if len(values) == 3:
        return less_equal(values[0], values[1]) and less_equal(values[1], values[2])
    return less_equal(values[0], values[1])


def op_gt(values: list[Any], data: Any, path: str) -> bool:
    return less(values[1], values[0])


def op_ge(values: list[Any], data: Any, path: str) -> bool:
    return less_equal(values[1], values[0])


def op_not(values: list[Any], data: Any, path: str) -> bool:
    return not truthy(values[0])


def op_truthy(values: list[Any], data: Any, path: str) -> bool:
    return truthy(values[0])


def op_in(values: list[Any], data: Any, path: str) -> bool:
    needle, haystack = values
    if type(haystack) is str or isinstance(haystack, str):
        return bool(haystack) and to_string(needle) in haystack
    if is_array(haystack):
        charge_items(len(haystack), "in", path)
        return any(strict_eq(needle, item) for item in haystack)
    return False


# -- arithmetic --------------------------------------------------------------------------------------


def _float(x: int | float) -> float:
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def _result(x: int | float) -> int | float:
    """Bring a result back to what a JavaScript double holds: big ints become floats, whole floats ints."""
    if type(x) is int:
        return x if -MAX_SAFE <= x <= MAX_SAFE else norm(_float(x))
    return norm(x)


def op_add(values: list[Any], data: Any, path: str) -> int | float:
    total: int | float = 0
    for value in values:
        number = parse_float(value)
        total = total + number if type(total) is type(number) else _float(total) + _float(number)
    return _result(total)


def int_mul(x: int, y: int) -> int | float:
    """``x * y`` of two ints as doubles multiply: a zero product of opposite signs is ``-0.0``."""
    product = x * y
    if product == 0 and (x < 0) != (y < 0):
        return -0.0  # JavaScript: -3 * 0 is -0 (an int 0 is always +0)
    return product


def op_mul(values: list[Any], data: Any, path: str) -> int | float:
    product: int | float = parse_float(values[0])
    for value in values[1:]:
        number = parse_float(value)
        if type(product) is int and type(number) is int:
            product = int_mul(product, number)
        else:
            product = _float(product) * _float(number)
        if type(product) is int and not -MAX_SAFE <= product <= MAX_SAFE:
            product = _float(product)  # keep ints bounded, as doubles are
    return _result(product)


def op_sub(values: list[Any], data: Any, path: str) -> int | float:
    a = to_number(values[0])
    if len(values) == 1:
        return _result(-a) if a or type(a) is not int else -0.0  # JavaScript: -0 and -null are -0
    b = to_number(values[1])
    return _result(a - b if type(a) is type(b) else _float(a) - _float(b))


def op_div(values: list[Any], data: Any, path: str) -> int | float:
    a, b = to_number(values[0]), to_number(values[1])
    if b == 0:
        if a == 0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    try:
        return _result(a / b)
    except OverflowError:
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def op_mod(values: list[Any], data: Any, path: str) -> int | float:
    a, b = to_number(values[0]), to_number(values[1])
    if type(a) is int and type(b) is int:
        if b == 0:
            return math.nan
        remainder = abs(a) % abs(b)
        if a < 0:
            return _result(-remainder) if remainder else -0.0  # the sign of the dividend: -4 % 2 is -0
        return _result(remainder)
    a, b = _float(a), _float(b)
    if b == 0 or a != a or b != b or math.isinf(a):
        return math.nan
    if math.isinf(b):
        return _result(a)
    return _result(math.fmod(a, b))


def _extreme(values: list[Any], pick: Callable[[list[Any]], Any], negative_zero_wins: bool) -> int | float:
    numbers = [to_number(value) for value in values]
    if any(n != n for n in numbers):
        return math.nan
    result = pick(numbers)
    if result == 0:
        # Python's min/max keep the first of equal values; Math.min takes -0 over +0, Math.max +0 over -0.
        negative = [type(n) is float and n == 0 and math.copysign(1.0, n) < 0 for n in numbers if n == 0]
        return -0.0 if (any(negative) if negative_zero_wins else all(negative)) else 0
    return _result(result)


def op_min(values: list[Any], data: Any, path: str) -> int | float:
    return _extreme(values, min, True)


def op_max(values: list[Any], data: Any, path: str) -> int | float:
    return _extreme(values, max, False)


# -- strings and arrays ------------------------------------------------------------------------------


def op_cat(values: list[Any], data: Any, path: str) -> str:
    out = "".join(value if type(value) is str else ("" if value is None else to_string(value)) for value in values)
    if len(out) >= SMALL_OUTPUT:
        charge_output(len(out), "cat", path)
    return out


def _to_integer(value: Any) -> float:
    """ToIntegerOrInfinity: NaN is 0, infinities stay, everything else truncates."""
    number = to_number(value)
    if number != number:
        return 0
    if isinstance(number, float) and math.isinf(number):
        return number
    return math.trunc(number)


def _substr(text: str, start: Any, length: Any = MISSING) -> str:
    size = len(text)
    begin = _to_integer(start)
    if begin < 0:
        begin = max(size + begin, 0)
    begin = int(min(begin, size))
    count = size if length is MISSING else _to_integer(length)
    count = int(min(max(count, 0), size - begin))
    return text[begin : begin + count]


def op_substr(values: list[Any], data: Any, path: str) -> str:
    text = to_string(values[0])
    if len(values) < 3:
        return _substr(text, values[1])
    end = values[2]
    if less(end, 0):
        tail = _substr(text, values[1])
        return _substr(tail, 0, len(tail) + to_number(end))
    return _substr(text, values[1], end)


def op_merge(values: list[Any], data: Any, path: str) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if is_array(value):
            out.extend(value)
        else:
            out.append(value)
    if len(out) >= SMALL_OUTPUT:
        charge_output(len(out), "merge", path)
    return out


EAGER: Final[dict[str, Callable[[list[Any], Any, str], Any]]] = {
    "var": op_var,
    "missing": op_missing,
    "missing_some": op_missing_some,
    "==": op_eq,
    "===": op_strict_eq,
    "!=": op_ne,
    "!==": op_strict_ne,
    "<": op_lt,
    "<=": op_le,
    ">": op_gt,
    ">=": op_ge,
    "!": op_not,
    "!!": op_truthy,
    "in": op_in,
    "+": op_add,
    "-": op_sub,
    "*": op_mul,
    "/": op_div,
    "%": op_mod,
    "min": op_min,
    "max": op_max,
    "cat": op_cat,
    "substr": op_substr,
    "merge": op_merge,
}
"""Operators that evaluate every argument first: ``(values, data, path) -> value``."""
