"""Limits set against abusive rules, and the per-evaluation work budget that enforces them.

Static limits (depth, node count) are checked once, when a rule is validated or compiled. Dynamic
limits (element visits by map/filter/reduce/all/some/none/missing, and the size of strings and arrays
built by cat/merge) are charged against a budget that lives for one evaluation.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from automate.core.errors import RuleLimitError

__all__ = ["DEFAULT_LIMITS", "SMALL_OUTPUT", "Budget", "Limits", "begin", "charge_items", "charge_output"]


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
    """Longest string or array that one cat/merge may build (map/filter output is bounded by iterations)."""
    max_output: int = 10_000_000
    """Total characters and elements that cat/merge may build during one evaluation."""


DEFAULT_LIMITS = Limits()

SMALL_OUTPUT = 32
"""Built strings and arrays shorter than this are not charged to the output budget: how many of them
an evaluation builds is bounded by the rule's size and the iteration budget. Longer ones are."""


class Budget:
    """What is left of the current evaluation's allowance (one per thread, reset by ``begin``)."""

    __slots__ = ("iterations", "limits", "output")

    def __init__(self, limits: Limits) -> None:
        self.reset(limits)

    def reset(self, limits: Limits) -> None:
        self.limits = limits
        self.iterations = limits.max_iterations
        self.output = limits.max_output


# One budget per thread. An evaluation is synchronous and runs on one thread from start to end, so
# a thread-local (not a ContextVar, whose values asyncio.to_thread copies into other threads) is the
# right scope, and resetting its counters is cheaper than allocating and installing a new object.
_state = threading.local()


def begin(limits: Limits) -> Budget:
    """Start an evaluation on this thread: a full allowance under ``limits``."""
    try:
        budget: Budget = _state.budget
    except AttributeError:
        budget = _state.budget = Budget(limits)
        return budget
    budget.limits = limits
    budget.iterations = limits.max_iterations
    budget.output = limits.max_output
    return budget


def _budget() -> Budget:
    try:
        return _state.budget
    except AttributeError:  # charged outside any evaluation: a throwaway allowance
        return Budget(DEFAULT_LIMITS)


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
