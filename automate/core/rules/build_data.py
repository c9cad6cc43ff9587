"""Closure builders for arithmetic, ``in`` and the iteration operators (map/filter/reduce/all/some/none).

Iteration operators charge every array they walk to the evaluation's budget before walking it, so
nested ``map``/``reduce`` over large data stop with ``RuleLimitError`` instead of running for hours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from automate.core.rules.coerce import MAX_SAFE, is_array, to_string, truthy
from automate.core.rules.limits import charge_items
from automate.core.rules.ops import op_add, op_in, op_mul, op_sub

if TYPE_CHECKING:
    from automate.core.rules.compiler import CompileContext, Fn

__all__ = ["BUILDERS"]

Builder = Callable[[list[Any], list[str], str, "CompileContext"], "Fn"]


# -- arithmetic --------------------------------------------------------------------------------------


def _arith(slow: Callable[[list[Any], Any, str], Any], fast: Callable[[int, int], int]) -> Builder:
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
    if is_array(haystack) and haystack and all(type(item) is str for item in haystack):
        strings = frozenset(haystack)  # strict equality with strings only ever matches a str
        return lambda d: (x in strings) if type(x := f_needle(d)) is str else False
    if type(haystack) is str:
        text = haystack
        if not text:
            return lambda d: False
        return lambda d: (x if type(x := f_needle(d)) is str else to_string(x)) in text
    ctx.uses_budget = True
    f_haystack = ctx.compile(haystack, paths[1])
    return lambda d: op_in([f_needle(d), f_haystack(d)], d, op_path)


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

    def filtered(d: Any) -> list[Any]:
        items = source(d)
        if not is_array(items):
            return []
        charge_items(len(items), "filter", op_path)
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


def _b_all(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    source, logic = _scoped(args, paths, ctx)

    def every(d: Any) -> bool:
        items = source(d)
        if not is_array(items) or not items:
            return False  # JSONLogic: "all" of an empty array is false
        charge_items(len(items), "all", op_path)
        return all(truthy(logic(item)) for item in items)

    return every


def _b_some(negate: bool) -> Builder:
    def build(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
        source, logic = _scoped(args, paths, ctx)
        name = "none" if negate else "some"

        def some(d: Any) -> bool:
            items = source(d)
            if not is_array(items):
                return negate
            charge_items(len(items), name, op_path)
            found = any(truthy(logic(item)) for item in items)
            return not found if negate else found

        return some

    return build


BUILDERS: dict[str, Builder] = {
    "+": _arith(op_add, lambda x, y: x + y),
    "*": _arith(op_mul, lambda x, y: x * y),
    "-": _b_sub,
    "in": _b_in,
    "map": _b_map,
    "filter": _b_filter,
    "reduce": _b_reduce,
    "all": _b_all,
    "some": _b_some(negate=False),
    "none": _b_some(negate=True),
}
