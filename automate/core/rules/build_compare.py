"""Closure builders for the comparison operators: ``==``, ``!=``, ``===``, ``!==``, ``<``, ``<=``, ``>``, ``>=``.

Literal arguments are folded in: ``{"<": [{"var": "total"}, 100]}`` becomes one key lookup and one
float compare when the value is a number; anything else falls back to ``coerce`` (JavaScript's
algorithms), so semantics stay in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from automate.core.rules.builder_base import Builder
from automate.core.rules.builder_base import is_literal as _is_literal
from automate.core.rules.builder_base import is_number as _is_number
from automate.core.rules.coerce import less, less_equal, loose_eq, strict_eq

if TYPE_CHECKING:
    from automate.core.rules.compiler import CompileContext, Fn

__all__ = ["BUILDERS"]



def _b_loose(negate: bool) -> Builder:
    def build(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
        a, b = args
        if _is_literal(a) and not _is_literal(b):
            a, b = b, a  # == is symmetric: keep the literal on the right
            paths = paths[::-1]
        fa = ctx.compile(a, paths[0])
        if type(b) is str or _is_number(b):
            kind = type(b)
            if kind is str:

                def eq(d: Any) -> bool:
                    x = fa(d)
                    return (x == b) if type(x) is str else loose_eq(x, b)

            else:

                def eq(d: Any) -> bool:
                    x = fa(d)
                    t = type(x)
                    return (x == b) if (t is int or t is float) else loose_eq(x, b)

        else:
            fb = ctx.compile(b, paths[1])

            def eq(d: Any) -> bool:
                x, y = fa(d), fb(d)
                t = type(x)
                if t is type(y) and (t is str or t is int or t is float or t is bool):
                    return x == y
                return loose_eq(x, y)

        if negate:
            return lambda d: not eq(d)
        return eq

    return build


def _b_strict(negate: bool) -> Builder:
    def build(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
        fa, fb = ctx.compile_all(args, paths)

        def eq(d: Any) -> bool:
            x, y = fa(d), fb(d)
            t = type(x)
            if t is type(y) and (t is str or t is int or t is float or t is bool):
                return x == y
            return strict_eq(x, y)

        if negate:
            return lambda d: not eq(d)
        return eq

    return build


def _b_order(strict: bool, flip: bool) -> Builder:
    """``<`` (strict) and ``<=``; with ``flip``, ``>`` and ``>=`` (``a > b`` is ``b < a``)."""
    compare = less if strict else less_equal

    def build(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
        fs = ctx.compile_all(args, paths)
        if len(fs) == 3:
            f0, f1, f2 = fs
            return lambda d: compare(f0(d), (m := f1(d))) and compare(m, f2(d))
        lo_i, hi_i = (1, 0) if flip else (0, 1)
        lo, hi, flo, fhi = args[lo_i], args[hi_i], fs[lo_i], fs[hi_i]
        if _is_number(hi) and not _is_literal(lo):
            if strict:

                def lt_hi(d: Any) -> bool:
                    x = flo(d)
                    return (x < hi) if type(x) in (int, float) else less(x, hi)

                return lt_hi

            def le_hi(d: Any) -> bool:
                x = flo(d)
                return (x <= hi) if type(x) in (int, float) else less_equal(x, hi)

            return le_hi
        if _is_number(lo) and not _is_literal(hi):
            if strict:

                def lt_lo(d: Any) -> bool:
                    x = fhi(d)
                    return (lo < x) if type(x) in (int, float) else less(lo, x)

                return lt_lo

            def le_lo(d: Any) -> bool:
                x = fhi(d)
                return (lo <= x) if type(x) in (int, float) else less_equal(lo, x)

            return le_lo
        return lambda d: compare(flo(d), fhi(d))

    return build


BUILDERS: dict[str, Builder] = {
    "==": _b_loose(negate=False),
    "!=": _b_loose(negate=True),
    "===": _b_strict(negate=False),
    "!==": _b_strict(negate=True),
    "<": _b_order(strict=True, flip=False),
    "<=": _b_order(strict=False, flip=False),
    ">": _b_order(strict=True, flip=True),
    ">=": _b_order(strict=False, flip=True),
}
