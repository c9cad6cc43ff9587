"""Static checks of a rule: known operators, argument counts, JSON-only values, size and depth.

The walk is iterative, so a rule nested a million levels deep is refused with ``RuleLimitError``
rather than crashing with ``RecursionError``. Paths name the offending node: the operator key for an
unknown operator or a wrong argument count (``$.and[1].foo``), the value itself otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from automate.core.errors import RuleError, RuleLimitError
from automate.core.rules.limits import DEFAULT_LIMITS, Limits
from automate.core.rules.ops import ARITY

__all__ = ["RuleInfo", "check", "op_args", "validate"]


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """What a valid rule contains."""

    nodes: int
    depth: int
    operators: frozenset[str]


def op_args(rule: dict[str, Any]) -> tuple[str, list[Any]]:
    """The operator of a (valid) rule object and its argument list; a lone argument becomes a list."""
    ((op, args),) = rule.items()
    if type(args) is list:
        return op, args
    if isinstance(args, list | tuple):
        return op, list(args)
    return op, [args]


def _arity_message(op: str, got: int) -> str:
    low, high = ARITY[op]
    if low == high:
        want = f"exactly {low}"
    elif high is None:
        want = f"at least {low}"
    else:
        want = f"{low} to {high}"
    plural = "" if (low == high == 1) else "s"
    return f"operator '{op}' takes {want} argument{plural}, got {got}"


def check(rule: Any, limits: Limits = DEFAULT_LIMITS) -> RuleInfo:
    """Validate ``rule`` and describe it; raise ``RuleError``/``RuleLimitError`` naming the path."""
    nodes = 0
    deepest = 0
    operators: set[str] = set()
    stack: list[tuple[Any, str, int]] = [(rule, "$", 1)]
    while stack:
        value, path, depth = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise RuleLimitError(f"rule has more than {limits.max_nodes} nodes", "$")
        if depth > limits.max_depth:
            raise RuleLimitError(f"rule is nested deeper than {limits.max_depth} levels", path)
        deepest = max(deepest, depth)
        kind = type(value)
        if value is None or kind in (bool, int, str):
            continue
        if kind is float:
            if not math.isfinite(value):
                raise RuleError(f"number {value!r} is not a JSON value", path)
            continue
        if kind is list or kind is tuple:
            for index in range(len(value) - 1, -1, -1):
                stack.append((value[index], f"{path}[{index}]", depth + 1))
            continue
        if kind is not dict:
            raise RuleError(f"value of type {kind.__name__} is not a JSON value", path)
        if len(value) != 1:
            keys = ", ".join(repr(key) for key in list(value)[:5])
            raise RuleError(
                f"a rule object must have exactly one key, the operator; got {len(value)}"
                + (f" ({keys})" if keys else ""),
                path,
            )
        ((op, raw_args),) = value.items()
        if type(op) is not str:
            raise RuleError(f"operator must be a string, got {type(op).__name__}", path)
        op_path = f"{path}.{op}"
        if op not in ARITY:
            raise RuleError(f"unknown operator '{op}'", op_path)
        operators.add(op)
        if isinstance(raw_args, list | tuple):
            low, high = ARITY[op]
            count = len(raw_args)
            if count < low or (high is not None and count > high):
                raise RuleError(_arity_message(op, count), op_path)
            for index in range(count - 1, -1, -1):
                stack.append((raw_args[index], f"{op_path}[{index}]", depth + 1))
        else:
            low, high = ARITY[op]
            if low > 1:
                raise RuleError(_arity_message(op, 1), op_path)
            stack.append((raw_args, op_path, depth + 1))
    return RuleInfo(nodes=nodes, depth=deepest, operators=frozenset(operators))


def validate(rule_spec: Any, *, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise ``RuleError`` (or ``RuleLimitError``) if ``rule_spec`` is not a valid, bounded rule."""
    check(rule_spec, limits)
