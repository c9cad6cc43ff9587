"""Compile a validated rule into nested closures, one per node.

A compiled node is a function of the data. Operators with a builder (``build_logic``, ``build_compare``, ``build_data``)
get specialised closures with literal arguments folded in; every other operator evaluates its
arguments and calls its function in ``ops.EAGER``. ``CompiledRule`` wraps the root closure with the
per-evaluation budget and turns a runaway recursion into ``RuleLimitError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from automate.core.errors import RuleLimitError
from automate.core.rules.build_compare import BUILDERS as _COMPARE_BUILDERS
from automate.core.rules.build_data import BUILDERS as _DATA_BUILDERS
from automate.core.rules.build_logic import BUILDERS as _LOGIC_BUILDERS
from automate.core.rules.coerce import truthy
from automate.core.rules.limits import DEFAULT_LIMITS, Limits, begin
from automate.core.rules.ops import EAGER
from automate.core.rules.validate import RuleInfo, check, op_args

__all__ = ["CompileContext", "CompiledRule", "Fn", "compile_node", "compile_rule"]

Fn = Callable[[Any], Any]

_BUILDERS = {**_LOGIC_BUILDERS, **_COMPARE_BUILDERS, **_DATA_BUILDERS}
_BUDGETED = frozenset({"missing", "missing_some", "in", "cat", "merge"})


class CompileContext:
    """Compiles nodes and records whether any of them charges the per-evaluation budget."""

    __slots__ = ("uses_budget",)

    def __init__(self) -> None:
        self.uses_budget = False

    def compile(self, rule: Any, path: str) -> Fn:
        return compile_node(rule, path, self)

    def compile_all(self, rules: list[Any], paths: list[str]) -> list[Fn]:
        return [compile_node(rule, path, self) for rule, path in zip(rules, paths, strict=True)]


def arg_paths(rule: dict[str, Any], path: str) -> tuple[str, list[Any], str, list[str]]:
    """``(op, args, op_path, arg_paths)`` of a valid rule object found at ``path``."""
    op, args = op_args(rule)
    op_path = f"{path}.{op}"
    if isinstance(rule[op], list | tuple):
        return op, args, op_path, [f"{op_path}[{i}]" for i in range(len(args))]
    return op, args, op_path, [op_path]


def compile_node(rule: Any, path: str, ctx: CompileContext) -> Fn:
    """The closure for ``rule`` (already validated) found at JSON path ``path``."""
    kind = type(rule)
    if kind is dict:
        op, args, op_path, paths = arg_paths(rule, path)
        builder = _BUILDERS.get(op)
        if builder is not None:
            return builder(args, paths, op_path, ctx)
        return _eager(op, ctx.compile_all(args, paths), op_path, ctx)
    if kind is list or kind is tuple:
        items = [compile_node(item, f"{path}[{i}]", ctx) for i, item in enumerate(rule)]
        return lambda d: [f(d) for f in items]  # a fresh list on every call
    return lambda d: rule


def _eager(op: str, fs: list[Fn], op_path: str, ctx: CompileContext) -> Fn:
    impl = EAGER[op]
    if op in _BUDGETED:
        ctx.uses_budget = True
    if len(fs) == 1:
        (f0,) = fs
        return lambda d: impl([f0(d)], d, op_path)
    if len(fs) == 2:
        f0, f1 = fs
        return lambda d: impl([f0(d), f1(d)], d, op_path)
    return lambda d: impl([f(d) for f in fs], d, op_path)


class CompiledRule:
    """A rule compiled once, evaluated many times: ``compiled(data)`` returns the JSONLogic value.

    ``run`` is the bare entry point (``compiled.run(data)``): it starts the evaluation's budget when
    the rule needs one, and does not turn ``RecursionError`` into ``RuleLimitError`` as calling the
    object does. ``apply``/``evaluate`` use it inside their own guard.
    """

    __slots__ = ("info", "limits", "run", "uses_budget")

    def __init__(self, fn: Fn, info: RuleInfo, limits: Limits, uses_budget: bool) -> None:
        self.info = info
        self.limits = limits
        self.uses_budget = uses_budget
        if uses_budget:

            def run(data: Any) -> Any:
                begin(limits)
                return fn(data)

            self.run: Fn = run
        else:
            self.run = fn

    def __call__(self, data: Any = None) -> Any:
        try:
            return self.run(data)
        except RecursionError:
            raise recursion_error() from None

    def evaluate(self, data: Any = None) -> bool:
        """JSONLogic truthiness of the rule's value for ``data``."""
        return truthy(self(data))

    def __repr__(self) -> str:
        return f"<CompiledRule nodes={self.info.nodes} depth={self.info.depth}>"


def recursion_error() -> RuleLimitError:
    return RuleLimitError("evaluation recursed too deeply", "$")


def compile_rule(rule: Any, *, limits: Limits = DEFAULT_LIMITS) -> CompiledRule:
    """Validate and compile ``rule`` (no caching; see ``engine.get_compiled`` for the cached path)."""
    info = check(rule, limits)
    ctx = CompileContext()
    fn = compile_node(rule, "$", ctx)
    return CompiledRule(fn, info, limits, ctx.uses_budget)
