"""JavaScript value semantics for JSON values, as JSONLogic (json-logic-js) defines them.

Python values map to JavaScript types: ``None`` is null, ``bool`` boolean, ``int``/``float`` number,
``str`` string, ``list``/``tuple`` array and ``dict`` object. Numbers follow IEEE doubles (NaN,
Infinity); results that are whole and within the safe-integer range come back as ``int``.

One deliberate difference: JavaScript compares arrays and objects by identity, which means nothing for
JSON values, so here two arrays (or two objects) are equal when their contents are strictly equal.
"""

from __future__ import annotations

import math
import re
from numbers import Real
from typing import Any

from automate.core.errors import RuleLimitError

__all__ = [
    "MAX_SAFE",
    "is_array",
    "less",
    "less_equal",
    "loose_eq",
    "norm",
    "number_to_string",
    "parse_float",
    "strict_eq",
    "to_number",
    "to_primitive",
    "to_string",
    "truthy",
]

MAX_SAFE = 2**53
NAN = math.nan
INF = math.inf

# JavaScript types, as small ints.
_NULL, _BOOL, _NUM, _STR, _OBJ = range(5)
_JSTYPE: dict[type, int] = {
    type(None): _NULL,
    bool: _BOOL,
    int: _NUM,
    float: _NUM,
    str: _STR,
    list: _OBJ,
    tuple: _OBJ,
    dict: _OBJ,
}

_DATA_DEPTH = 200  # deepest data nesting walked by to_string / strict_eq

# StringToNumber: an optional sign, a decimal literal, an optional exponent (ASCII digits only).
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_DECIMAL = re.compile(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+")
# parseFloat: the longest prefix that is a decimal literal or Infinity.
_FLOAT_PREFIX = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_JS_SPACE = (
    " \t\n\v\f\r"
    "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def jstype(value: Any) -> int:
    kind = _JSTYPE.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, Real):
        return _NUM
    if isinstance(value, str):
        return _STR
    return _OBJ


def is_array(value: Any) -> bool:
    return type(value) is list or isinstance(value, list | tuple)


def norm(x: float) -> int | float:
    """A whole float within the safe-integer range as an ``int``; anything else unchanged.

    ``-0.0`` stays a float: no int holds a negative zero, and JavaScript tells it apart (``1 / -0`` is
    ``-Infinity``).
    """
    if x.is_integer() and -MAX_SAFE <= x <= MAX_SAFE and (x or math.copysign(1.0, x) > 0):
        return int(x)
    return x


def truthy(value: Any) -> bool:
    """JSONLogic truthiness: JavaScript's, except that an empty array is falsy too."""
    kind = type(value)
    if kind is bool:
        return value
    if kind is dict:
        return True  # every object is truthy in JavaScript, even {}
    if kind is float:
        return value == value and value != 0  # NaN is falsy
    if kind in (str, int, list, tuple) or value is None:
        return bool(value)
    if isinstance(value, Real):
        return value == value and value != 0
    return bool(value) if isinstance(value, str | list | tuple) else True


# -- to string ---------------------------------------------------------------------------------------


def number_to_string(x: float) -> str:
    """ECMAScript Number::toString for a double (or an int, treated as one)."""
    if type(x) is int and -(10**21) < x < 10**21:
        return str(x)
    try:
        x = float(x)
    except OverflowError:
        return "Infinity" if x > 0 else "-Infinity"
    if x != x:
        return "NaN"
    if x in (INF, -INF):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 1e21:
        return str(int(x))
    sign = "-" if x < 0 else ""
    text = repr(abs(x))  # shortest round-trip digits, like JavaScript's
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    stripped = digits.rstrip("0")
    k = len(stripped)
    n = exponent - len(frac) + (len(digits) - k) + k  # value = 0.<stripped> * 10**n
    if k <= n <= 21:
        out = stripped + "0" * (n - k)
    elif 0 < n <= 21:
        out = stripped[:n] + "." + stripped[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + stripped
    else:
        e = n - 1
        exp = ("+" if e >= 0 else "-") + str(abs(e))
        out = stripped + "e" + exp if k == 1 else stripped[0] + "." + stripped[1:] + "e" + exp
    return sign + out


def to_string(value: Any, _depth: int = 0) -> str:
    """ECMAScript ToString; arrays join their elements with ``,`` (null elements become empty)."""
    kind = jstype(value)
    if kind == _STR:
        return value
    if kind == _NUM:
        return number_to_string(value)
    if kind == _BOOL:
        return "true" if value else "false"
    if kind == _NULL:
        return "null"
    if is_array(value):
        if _depth >= _DATA_DEPTH:
            raise RuleLimitError(f"data nested deeper than {_DATA_DEPTH} levels", "$")
        return ",".join("" if item is None else to_string(item, _depth + 1) for item in value)
    return "[object Object]"


def to_primitive(value: Any) -> Any:
    """ECMAScript ToPrimitive (hint number) for JSON values: arrays and objects become strings."""
    if jstype(value) == _OBJ:
        return to_string(value)
    return value


# -- to number ---------------------------------------------------------------------------------------


def _string_to_number(text: str) -> int | float:
    text = text.strip(_JS_SPACE)
    if not text:
        return 0
    if _DECIMAL.fullmatch(text):
        return norm(float(text))
    if text in ("Infinity", "+Infinity"):
        return INF
    if text == "-Infinity":
        return -INF
    if _NON_DECIMAL.fullmatch(text):
        try:
            return norm(float(int(text, 0)))
        except OverflowError:
            return INF
    return NAN


def to_number(value: Any) -> int | float:
    """ECMAScript ToNumber (as the ``-``, ``/``, ``%``, ``min``, ``max`` and comparisons use it)."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    js = jstype(value)
    if js == _STR:
        return _string_to_number(value)
    if js == _BOOL:
        return 1 if value else 0
    if js == _NULL:
        return 0
    if js == _NUM:
        return norm(float(value))
    return _string_to_number(to_string(value))


def parse_float(value: Any) -> int | float:
    """JavaScript ``parseFloat`` (as ``+`` and ``*`` use it): the longest numeric prefix, else NaN.

    A number is read through its string, so ``parseFloat(-0)`` is ``0`` (``String(-0)`` is ``"0"``);
    the string ``"-0"`` gives ``-0``.
    """
    kind = type(value)
    if kind is int:
        return value
    if kind is float:
        return value or 0  # -0.0 (and 0.0) -> 0; NaN is truthy and stays
    if jstype(value) == _NUM:
        return norm(float(value)) or 0
    text = to_string(value).lstrip(_JS_SPACE)
    match = _FLOAT_PREFIX.match(text)
    if match is None:
        return NAN
    literal = match.group()
    if literal.endswith("Infinity"):
        return -INF if literal.startswith("-") else INF
    return norm(float(literal))


# -- equality and order ------------------------------------------------------------------------------


def strict_eq(a: Any, b: Any, _depth: int = 0) -> bool:
    """``===``: same JavaScript type and same value; arrays and objects compare by content."""
    ka, kb = jstype(a), jstype(b)
    if ka != kb:
        return False
    if ka != _OBJ:
        return ka == _NULL or a == b
    if a is b:
        return True
    if _depth >= _DATA_DEPTH:
        raise RuleLimitError(f"data nested deeper than {_DATA_DEPTH} levels", "$")
    if is_array(a):
        if not is_array(b) or len(a) != len(b):
            return False
        return all(strict_eq(x, y, _depth + 1) for x, y in zip(a, b, strict=True))
    if not isinstance(a, dict) or not isinstance(b, dict) or a.keys() != b.keys():
        return False
    return all(strict_eq(a[key], b[key], _depth + 1) for key in a)


def loose_eq(a: Any, b: Any) -> bool:
    """``==``: JavaScript's abstract equality (with content equality for arrays/objects)."""
    ka, kb = jstype(a), jstype(b)
    if ka == kb:
        return strict_eq(a, b)
    if ka == _NULL or kb == _NULL:
        return False
    if ka == _BOOL:
        return loose_eq(1 if a else 0, b)
    if kb == _BOOL:
        return loose_eq(a, 1 if b else 0)
    if ka == _NUM and kb == _STR:
        return a == _string_to_number(b)
    if ka == _STR and kb == _NUM:
        return _string_to_number(a) == b
    if ka == _OBJ:
        return loose_eq(to_primitive(a), b)
    return loose_eq(a, to_primitive(b))


def _order_operands(a: Any, b: Any) -> tuple[Any, Any, bool]:
    """ToPrimitive both; ``(x, y, True)`` when both are strings (compared as text), else numbers."""
    a, b = to_primitive(a), to_primitive(b)
    if type(a) is str and type(b) is str:
        return a, b, True
    return to_number(a), to_number(b), False


def less(a: Any, b: Any) -> bool:
    """JavaScript ``a < b``; False whenever a NaN is involved."""
    kind = type(a)
    if (kind is int or kind is float) and type(b) in (int, float):
        return a < b
    x, y, _ = _order_operands(a, b)
    return x < y


def less_equal(a: Any, b: Any) -> bool:
    """JavaScript ``a <= b``; False whenever a NaN is involved."""
    kind = type(a)
    if (kind is int or kind is float) and type(b) in (int, float):
        return a <= b
    x, y, _ = _order_operands(a, b)
    return x <= y
