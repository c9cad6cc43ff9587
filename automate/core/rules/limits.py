"""Limits set against abusive rules, and the per-evaluation work budget that enforces them.

Static limits (depth, node count) are checked once, when a rule is validated or compiled. Dynamic
limits (element visits by map/filter/reduce/all/some/none/missing, and the size of strings and arrays
built by cat/merge/map/filter) are charged against a budget that lives for one evaluation.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from automate.core.errors import RuleLimitError

__all__ = ["DEFAULT_LIMITS", "Budget", "Limits", "charge_items", "charge_output", "current_budget"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one rule and on the work of one evaluation."""

    max_depth: int = 64
    """Deepest nesting of objects and arrays in a rule (the rule itself is level 1)."""
    max_nodes: int = 10_000
    """Most values (operators, literals, array elements) a rule may contain."""
    max_iterations: int = 1_000_000
    """Most array elements that iteration operators may visit during one evaluation, all nested."""
    max_value_size: int = 1_000_000
    """Longest string or array that one cat/merge/map/filter may build."""
    max_output: int = 10_000_000
    """Total characters and elements that cat/merge/map/filter may build during one evaluation."""


DEFAULT_LIMITS = Limits()


class Budget:
    """What is left of one evaluation's allowance. Created per evaluation, never shared."""

    __slots__ = ("iterations", "limits", "output")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.iterations = limits.max_iterations
        self.output = limits.max_output


_CURRENT: ContextVar[Budget | None] = ContextVar("automate_rules_budget", default=None)
current_budget = _CURRENT


def _budget() -> Budget:
    budget = _CURRENT.get()
    if budget is None:  # called outside an evaluation: a throwaway allowance, never stored
        budget = Budget(DEFAULT_LIMITS)
    return budget


def charge_items(count: int, op: str, path: str) -> None:
    """Charge ``count`` element visits by operator ``op``; raise once the evaluation's budget is spent."""
    budget = _budget()
    budget.iterations -= count
    if budget.iterations < 0:
        raise RuleLimitError(
            f"'{op}' exceeded the iteration budget of {budget.limits.max_iterations} element visits per evaluation",
            path,
        )


def charge_output(size: int, op: str, path: str) -> None:
    """Charge a built string/array of length ``size``; raise if it or the evaluation's total is too big."""
    budget = _budget()
    if size > budget.limits.max_value_size:
        raise RuleLimitError(
            f"'{op}' built a value of size {size}, more than the limit of {budget.limits.max_value_size}",
            path,
        )
    budget.output -= size
    if budget.output < 0:
        raise RuleLimitError(
            f"'{op}' exceeded the output budget of {budget.limits.max_output} characters/elements per evaluation",
            path,
        )
