"""Closure builders for data access (``var``) and control flow (``if``, ``and``, ``or``, ``!``, ``!!``).

Each builder takes an operator's raw arguments (with their JSON paths) and returns a closure of the
data. A ``var`` with a literal path becomes direct key lookups; control flow uses Python's own truth
tests wherever a value can never be one on which Python and JSONLogic disagree (see ``plain_truth``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from automate.core.rules.builder_base import Builder
from automate.core.rules.builder_base import is_literal as _is_literal
from automate.core.rules.coerce import truthy
from automate.core.rules.ops import MISSING, lookup, split_path

if TYPE_CHECKING:
    from automate.core.rules.compiler import CompileContext, Fn

__all__ = ["BUILDERS"]



def _const(value: Any) -> Fn:
    return lambda d: value


# -- data --------------------------------------------------------------------------------------------


def _b_var(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    if not args:
        return lambda d: d
    default_fn = ctx.compile(args[1], paths[1]) if len(args) > 1 else _const(None)
    default = args[1] if len(args) > 1 else None
    const_default = _is_literal(default)
    if isinstance(args[0], dict | list | tuple):
        path_fn = ctx.compile(args[0], paths[0])

        def dynamic(d: Any) -> Any:
            parts = split_path(path_fn(d))
            if parts is None:
                return d
            found = lookup(d, parts)
            return default_fn(d) if found is MISSING else found

        return dynamic
    parts = split_path(args[0])
    if parts is None:
        return lambda d: d
    if len(parts) == 1 and const_default:
        key = parts[0]

        def one(d: Any) -> Any:
            if type(d) is dict:
                return d.get(key, default)
            found = lookup(d, parts)
            return default if found is MISSING else found

        return one
    if len(parts) == 2 and const_default:
        k0, k1 = parts

        def two(d: Any) -> Any:
            if type(d) is dict:
                inner = d.get(k0)
                if type(inner) is dict:
                    return inner.get(k1, default)
            found = lookup(d, parts)
            return default if found is MISSING else found

        return two

    def deep(d: Any) -> Any:
        found = lookup(d, parts)
        return default_fn(d) if found is MISSING else found

    return deep


# -- control -----------------------------------------------------------------------------------------

_BOOL_OPS = frozenset({"==", "!=", "===", "!==", "<", "<=", ">", ">=", "!", "!!", "in", "all", "some", "none"})


def returns_bool(rule: Any) -> bool:
    """Whether ``rule`` always evaluates to True or False (so plain Python truth tests are exact)."""
    if type(rule) is bool:
        return True
    if type(rule) is not dict or len(rule) != 1:
        return False
    ((op, raw),) = rule.items()
    if op in _BOOL_OPS:
        return True
    args = raw if isinstance(raw, list | tuple) else [raw]
    if op in ("and", "or"):
        return bool(args) and all(returns_bool(arg) for arg in args)
    if op in ("if", "?:"):
        branches = [args[i] for i in range(1, len(args), 2)]
        if len(args) % 2:
            branches.append(args[-1])
        return len(args) > 1 and len(args) % 2 == 1 and all(returns_bool(b) for b in branches)
    return False


_PLAIN_OPS = _BOOL_OPS | {"missing", "missing_some", "merge", "map", "filter", "cat", "substr"}


def plain_truth(rule: Any) -> bool:
    """Whether Python's truth test of ``rule``'s value is exactly JSONLogic truthiness.

    The two differ only for objects (``{}`` is truthy in JSONLogic), NaN (falsy) and non-JSON types,
    so a rule whose value is always a boolean, number literal, string or array qualifies. Python's
    ``and``/``or`` then also return the same operand JSONLogic does.
    """
    kind = type(rule)
    if rule is None or kind in (bool, int, float, str, list, tuple):
        return True  # literals (floats in a valid rule are finite); arrays evaluate to fresh lists
    if kind is not dict or len(rule) != 1:
        return False
    ((op, raw),) = rule.items()
    if op in _PLAIN_OPS:
        return True
    args = raw if isinstance(raw, list | tuple) else [raw]
    if op in ("and", "or"):
        return all(plain_truth(arg) for arg in args)
    if op in ("if", "?:"):
        branches = [args[i] for i in range(1, len(args), 2)]
        if len(args) % 2:
            branches.append(args[-1])
        return all(plain_truth(branch) for branch in branches)
    return False


def _b_if(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    fs = ctx.compile_all(args, paths)
    if not fs:
        return _const(None)
    if len(fs) == 1:
        return fs[0]
    if len(fs) in (2, 3):
        cond, then = fs[0], fs[1]
        other = fs[2] if len(fs) == 3 else _const(None)
        if plain_truth(args[0]):
            return lambda d: then(d) if cond(d) else other(d)

        def ternary(d: Any) -> Any:
            v = cond(d)
            if v is True or (v is not False and truthy(v)):
                return then(d)
            return other(d)

        return ternary
    pairs = [(fs[i], fs[i + 1]) for i in range(0, len(fs) - 1, 2)]
    last = fs[-1] if len(fs) % 2 else _const(None)
    if all(plain_truth(args[i]) for i in range(0, len(args) - 1, 2)):

        def plain_chain(d: Any) -> Any:
            for cond, then in pairs:
                if cond(d):
                    return then(d)
            return last(d)

        return plain_chain

    def chain(d: Any) -> Any:
        for cond, then in pairs:
            v = cond(d)
            if v is True or (v is not False and truthy(v)):
                return then(d)
        return last(d)

    return chain


def _b_and(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    fs = ctx.compile_all(args, paths)
    if len(fs) == 1:
        return fs[0]
    if all(plain_truth(arg) for arg in args):  # Python's "and" is then exact, value included
        if len(fs) == 2:
            b0, b1 = fs
            return lambda d: b0(d) and b1(d)
        if len(fs) == 3:
            b0, b1, b2 = fs
            return lambda d: b0(d) and b1(d) and b2(d)

        def all_true(d: Any) -> Any:
            v = None
            for f in fs:
                v = f(d)
                if not v:
                    return v
            return v

        return all_true
    if len(fs) == 2:
        f0, f1 = fs

        def both(d: Any) -> Any:
            v = f0(d)
            if v is False or (v is not True and not truthy(v)):
                return v
            return f1(d)

        return both

    def every(d: Any) -> Any:
        v = None
        for f in fs:
            v = f(d)
            if v is False or (v is not True and not truthy(v)):
                return v
        return v

    return every


def _b_or(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    fs = ctx.compile_all(args, paths)
    if len(fs) == 1:
        return fs[0]
    if all(plain_truth(arg) for arg in args):
        if len(fs) == 2:
            b0, b1 = fs
            return lambda d: b0(d) or b1(d)
        if len(fs) == 3:
            b0, b1, b2 = fs
            return lambda d: b0(d) or b1(d) or b2(d)

        def any_true(d: Any) -> Any:
            v = None
            for f in fs:
                v = f(d)
                if v:
                    return v
            return v

        return any_true
    if len(fs) == 2:
        f0, f1 = fs

        def either(d: Any) -> Any:
            v = f0(d)
            if v is True or (v is not False and truthy(v)):
                return v
            return f1(d)

        return either

    def first(d: Any) -> Any:
        v = None
        for f in fs:
            v = f(d)
            if v is True or (v is not False and truthy(v)):
                return v
        return v

    return first


def _b_not(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    (f,) = ctx.compile_all(args, paths)
    if plain_truth(args[0]):
        return lambda d: not f(d)
    return lambda d: not truthy(f(d))


def _b_truthy(args: list[Any], paths: list[str], op_path: str, ctx: CompileContext) -> Fn:
    (f,) = ctx.compile_all(args, paths)
    if returns_bool(args[0]):
        return f
    if plain_truth(args[0]):
        return lambda d: bool(f(d))
    return lambda d: truthy(f(d))


BUILDERS: dict[str, Builder] = {
    "var": _b_var,
    "if": _b_if,
    "?:": _b_if,
    "and": _b_and,
    "or": _b_or,
    "!": _b_not,
    "!!": _b_truthy,
}
