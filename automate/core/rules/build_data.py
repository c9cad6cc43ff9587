"""Closure builders for arithmetic, ``in`` and the iteration operators (map/filter/reduce/all/some/none).

Iteration operators charge every array they walk to the evaluation's budget before walking it, so
nested ``map``/``reduce`` over large data stop with ``RuleLimitError`` instead of running for hours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from automate.core.rules.build_logic import plain_truth
from automate.core.rules.builder_base import PRIMITIVES as _PRIMITIVES
from automate.core.rules.builder_base import Builder
from automate.core.rules.coerce import MAX_SAFE, is_array, strict_eq, to_string, truthy
from automate.core.rules.limits import SMALL_OUTPUT, charge_items, charge_output
from automate.core.rules.ops import int_mul, op_add, op_in, op_missing, op_mul, op_sub

if TYPE_CHECKING:
    from automate.core.rules.compiler import CompileContext, Fn

__all__ = ["BUILDERS"]



# -- arithmetic --------------------------------------------------------------------------------------


def _arith(slow: Callable[[list[Any], Any, str], Any], fast: Callable[[int, int], int | float]) -> Builder:
    """A builder that adds an int-and-int fast path (exact while within the safe-integer range)."""

    def build(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
        fs = ctx.compile_all(args, paths)
        if len(fs) != 2:
            return lambda d: slow([f(d) for f in fs], d, op_path)
        f0, f1 = fs

        def binary(d: Any) -> Any:
            x, y = f0(d), f1(d)
            if type(x) is int and type(y) is int:
                r = fast(x, y)
                if -MAX_SAFE <= r <= MAX_SAFE:
                    return r
            return slow([x, y], d, op_path)

        return binary

    return build


def _b_sub(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    if len(args) == 2:
        return _arith(op_sub, lambda x, y: x - y)(args, paths, op_path, ctx)
    (f,) = ctx.compile_all(args, paths)
    return lambda d: op_sub([f(d)], d, op_path)


# -- membership --------------------------------------------------------------------------------------


def _b_in(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    needle, haystack = args
    f_needle = ctx.compile(needle, paths[0])
    if is_array(haystack) and haystack and all(type(item) in _PRIMITIVES for item in haystack):
        return _in_literals(f_needle, haystack)
    if type(haystack) is str:
        text = haystack
        if not text:
            return lambda d: False
        return lambda d: (x if type(x := f_needle(d)) is str else to_string(x)) in text
    ctx.uses_budget = True
    f_haystack = ctx.compile(haystack, paths[1])
    return lambda d: op_in([f_needle(d), f_haystack(d)], d, op_path)




def _in_literals(f_needle: Fn, haystack: list[Any]) -> Fn:
    """``in`` over a literal array of primitives: set lookups per JavaScript type (``===`` semantics)."""
    strings = frozenset(item for item in haystack if type(item) is str)
    numbers = frozenset(item for item in haystack if type(item) is int or type(item) is float)
    booleans = frozenset(item for item in haystack if type(item) is bool)
    has_null = any(item is None for item in haystack)
    if not numbers and not booleans and not has_null:
        return lambda d: (x in strings) if type(x := f_needle(d)) is str else False
    items = list(haystack)

    def member(d: Any) -> bool:
        x = f_needle(d)
        kind = type(x)
        if kind is str:
            return x in strings
        if kind is int or kind is float:
            return x in numbers  # NaN is in no set, as NaN === NaN is false
        if kind is bool:
            return x in booleans
        if x is None:
            return has_null
        if kind is list or kind is tuple or kind is dict:
            return False  # never strictly equal to a primitive
        return any(strict_eq(x, item) for item in items)  # other number/str types

    return member


def _b_missing(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    keys = args[0] if len(args) == 1 and is_array(args[0]) else args
    if not all(type(key) is str or type(key) is int for key in keys):
        ctx.uses_budget = True
        fs = ctx.compile_all(args, paths)
        return lambda d: op_missing([f(d) for f in fs], d, op_path)
    # literal keys (bounded by the rule's size): one compiled var lookup each; absent reads as null
    getters = [(key, ctx.compile({"var": key}, op_path)) for key in keys]

    def missing(d: Any) -> list[Any]:
        out = []
        for key, get in getters:
            value = get(d)
            if value is None or (type(value) is str and not value):
                out.append(key)
        return out

    return missing


def _b_cat(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    fs = ctx.compile_all(args, paths)
    ctx.uses_budget = True

    def cat(d: Any) -> str:
        out = "".join([v if type(v := f(d)) is str else ("" if v is None else to_string(v)) for f in fs])
        if len(out) >= SMALL_OUTPUT:
            charge_output(len(out), "cat", op_path)
        return out

    return cat


# -- iteration ---------------------------------------------------------------------------------------


def _scoped(args: list[Any], paths: list[str], ctx: CompileContext) -> tuple[Fn, Fn]:
    ctx.uses_budget = True
    return ctx.compile(args[0], paths[0]), ctx.compile(args[1], paths[1])


def _b_map(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    source, logic = _scoped(args, paths, ctx)

    def mapped(d: Any) -> list[Any]:
        items = source(d)
        if not is_array(items):
            return []
        charge_items(len(items), "map", op_path)
        return [logic(item) for item in items]

    return mapped


def _b_filter(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    source, logic = _scoped(args, paths, ctx)
    exact = plain_truth(args[1])

    def filtered(d: Any) -> list[Any]:
        items = source(d)
        if not is_array(items):
            return []
        charge_items(len(items), "filter", op_path)
        if exact:
            return [item for item in items if logic(item)]
        return [item for item in items if truthy(logic(item))]

    return filtered


def _b_reduce(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    source, logic = _scoped(args, paths, ctx)
    initial = ctx.compile(args[2], paths[2]) if len(args) > 2 else (lambda d: None)

    def reduced(d: Any) -> Any:
        items = source(d)
        accumulator = initial(d)
        if not is_array(items):
            return accumulator
        charge_items(len(items), "reduce", op_path)
        for item in items:
            accumulator = logic({"current": item, "accumulator": accumulator})
        return accumulator

    return reduced


def _b_quantifier(op: str) -> Builder:
    """``all`` (stops at the first falsy element), ``some`` and ``none`` (stop at the first truthy one)."""
    empty = op == "none"  # the answer for an empty array or a non-array
    stop_on = op == "all"  # all stops when an element is *not* truthy
    found_answer = op == "some"  # what some/none answer on finding a truthy element

    def build(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
        source, logic = _scoped(args, paths, ctx)
        test = logic if plain_truth(args[1]) else (lambda item: truthy(logic(item)))

        def quantified(d: Any) -> bool:
            items = source(d)
            if not is_array(items) or not items:
                return empty
            charge_items(len(items), op, op_path)
            if stop_on:
                for item in items:  # noqa: SIM110 - a loop beats all()/any() over a generator
                    if not test(item):
                        return False
                return True
            for item in items:
                if test(item):
                    return found_answer
            return not found_answer

        return quantified

    return build


BUILDERS: dict[str, Builder] = {
    "+": _arith(op_add, lambda x, y: x + y),
    "*": _arith(op_mul, int_mul),
    "-": _b_sub,
    "in": _b_in,
    "missing": _b_missing,
    "cat": _b_cat,
    "map": _b_map,
    "filter": _b_filter,
    "reduce": _b_reduce,
    "all": _b_quantifier("all"),
    "some": _b_quantifier("some"),
    "none": _b_quantifier("none"),
}
