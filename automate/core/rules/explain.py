"""``explain``: evaluate a rule while recording a tree that shows which condition decided the result.

Every node is a dict::

    {"kind": "op" | "literal" | "array", "path": "$.and[1]", "op": "==" (op nodes only),
     "args": [child nodes], "value": <resolved value>, "passed": <JSONLogic truthiness>,
     "evaluated": True}

Arguments that a short-circuiting operator (``and``, ``or``, ``if``, ``?:``, ``all``, ``some``,
``none``) never reached are still shown, with ``"evaluated": False`` and ``passed`` of ``None``
(``value`` too, except for literals, which keep theirs), so the whole rule is visible.

Iteration operators also carry ``"iterations"``: the per-element trees of the first few elements (and
always the element that decided ``all``/``some``/``none``), with ``"iterations_total"`` and
``"iterations_evaluated"`` counting the elements there were and those evaluated before the operator
stopped. Their per-element template, ``args[1]``, is marked ``"per_item": True``.
"""

from __future__ import annotations

from typing import Any

from automate.core.errors import RuleLimitError
from automate.core.rules.coerce import is_array, truthy
from automate.core.rules.compiler import CompileContext, Fn, arg_paths, compile_node
from automate.core.rules.limits import DEFAULT_LIMITS, Limits, begin, charge_items
from automate.core.rules.ops import EAGER
from automate.core.rules.validate import check

__all__ = ["explain"]

SHOWN_ITERATIONS = 10
"""Per iteration operator, how many elements get a recorded tree."""
MAX_RECORDED_NODES = 50_000
"""Once an explanation holds this many nodes, iterations are evaluated without recording."""


class _Explainer:
    __slots__ = ("nodes_left", "shown")

    def __init__(self, shown: int) -> None:
        self.shown = shown
        self.nodes_left = MAX_RECORDED_NODES

    # -- node shapes -------------------------------------------------------------------------------

    def _make(self, node: dict[str, Any], value: Any, evaluated: bool = True) -> dict[str, Any]:
        self.nodes_left -= 1
        node["value"] = value if evaluated or node["kind"] == "literal" else None
        node["passed"] = truthy(value) if evaluated else None
        node["evaluated"] = evaluated
        return node

    def static(self, rule: Any, path: str) -> dict[str, Any]:
        """The tree of a part of the rule that was not evaluated."""
        if type(rule) is dict:
            op, args, _, paths = arg_paths(rule, path)
            children = [self.static(a, p) for a, p in zip(args, paths, strict=True)]
            return self._make({"kind": "op", "op": op, "path": path, "args": children}, None, False)
        if isinstance(rule, list | tuple):
            children = [self.static(item, f"{path}[{i}]") for i, item in enumerate(rule)]
            return self._make({"kind": "array", "path": path, "args": children}, None, False)
        return self._make({"kind": "literal", "path": path, "args": []}, rule, False)

    # -- evaluation --------------------------------------------------------------------------------

    def node(self, rule: Any, data: Any, path: str) -> dict[str, Any]:
        if type(rule) is dict:
            return self._op(rule, data, path)
        if isinstance(rule, list | tuple):
            children = [self.node(item, data, f"{path}[{i}]") for i, item in enumerate(rule)]
            value = [child["value"] for child in children]
            return self._make({"kind": "array", "path": path, "args": children}, value)
        return self._make({"kind": "literal", "path": path, "args": []}, rule)

    def _op(self, rule: dict[str, Any], data: Any, path: str) -> dict[str, Any]:
        op, args, op_path, paths = arg_paths(rule, path)
        node: dict[str, Any] = {"kind": "op", "op": op, "path": path}
        if op in ("if", "?:"):
            children, value = self._if(args, paths, data)
        elif op in ("and", "or"):
            children, value = self._and_or(op == "and", args, paths, data)
        elif op in ("map", "filter", "reduce", "all", "some", "none"):
            children, value = self._iterate(op, node, args, paths, op_path, data)
        else:
            children = [self.node(a, data, p) for a, p in zip(args, paths, strict=True)]
            value = EAGER[op]([child["value"] for child in children], data, op_path)
        node["args"] = children
        return self._make(node, value)

    def _if(self, args: list[Any], paths: list[str], data: Any) -> tuple[list[dict[str, Any]], Any]:
        children: list[dict[str, Any]] = []
        index = 0
        while index + 1 < len(args):
            condition = self.node(args[index], data, paths[index])
            children.append(condition)
            if condition["passed"]:
                then = self.node(args[index + 1], data, paths[index + 1])
                children.append(then)
                rest = range(index + 2, len(args))
                children.extend(self.static(args[i], paths[i]) for i in rest)
                return children, then["value"]
            children.append(self.static(args[index + 1], paths[index + 1]))
            index += 2
        if index < len(args):
            last = self.node(args[index], data, paths[index])
            children.append(last)
            return children, last["value"]
        return children, None

    def _and_or(self, is_and: bool, args: list[Any], paths: list[str], data: Any) -> tuple[list[dict[str, Any]], Any]:
        children: list[dict[str, Any]] = []
        value: Any = None
        for index, (arg, path) in enumerate(zip(args, paths, strict=True)):
            child = self.node(arg, data, path)
            children.append(child)
            value = child["value"]
            if child["passed"] != is_and:  # and stops at the first falsy, or at the first truthy
                children.extend(self.static(args[i], paths[i]) for i in range(index + 1, len(args)))
                break
        return children, value

    def _iterate(
        self,
        op: str,
        node: dict[str, Any],
        args: list[Any],
        paths: list[str],
        op_path: str,
        data: Any,
    ) -> tuple[list[dict[str, Any]], Any]:
        source = self.node(args[0], data, paths[0])
        template = self.static(args[1], paths[1])
        template["per_item"] = True  # evaluated once per element: see "iterations"
        children = [source, template]
        initial: Any = None
        if len(args) > 2:
            initial_node = self.node(args[2], data, paths[2])
            children.append(initial_node)
            initial = initial_node["value"]
        items = source["value"]
        if not is_array(items):
            items = []
        iterations: list[dict[str, Any]] = []
        node["iterations"] = iterations
        node["iterations_total"] = len(items)
        if op == "all" and not items:
            return children, False
        if op == "reduce" and not is_array(source["value"]):
            return children, initial
        charge_items(len(items), op, op_path)
        fast: Fn | None = None
        node["iterations_evaluated"] = 0

        def run(index: int, item: Any, decisive: bool = False) -> Any:
            nonlocal fast
            if not decisive:
                node["iterations_evaluated"] += 1
            if (index < self.shown and self.nodes_left > 0) or decisive:
                tree = self.node(args[1], item, paths[1])
                iterations.append({"index": index, "node": tree})
                return tree["value"]
            if fast is None:
                fast = compile_node(args[1], paths[1], CompileContext())
            return fast(item)

        if op == "map":
            return children, [run(i, item) for i, item in enumerate(items)]
        if op == "filter":
            return children, [item for i, item in enumerate(items) if truthy(run(i, item))]
        if op == "reduce":
            accumulator = initial
            for i, item in enumerate(items):
                accumulator = run(i, {"current": item, "accumulator": accumulator})
            return children, accumulator
        stop_when = op != "all"  # all stops at a falsy element; some/none at a truthy one
        for i, item in enumerate(items):
            if truthy(run(i, item)) == stop_when:
                if not iterations or iterations[-1]["index"] != i:
                    run(i, item, decisive=True)  # record the element that decided the result
                return children, (op == "some")
        return children, (op != "some")


def explain(
    rule_spec: Any, context: Any = None, *, limits: Limits = DEFAULT_LIMITS, shown: int = SHOWN_ITERATIONS
) -> dict[str, Any]:
    """Evaluate ``rule_spec`` against ``context`` and return the explanation tree (see module doc).

    ``tree["passed"]`` is what ``evaluate`` returns and ``tree["value"]`` what ``apply`` returns.
    """
    check(rule_spec, limits)
    begin(limits)
    try:
        return _Explainer(shown).node(rule_spec, context, "$")
    except RecursionError:
        raise RuleLimitError("evaluation recursed too deeply", "$") from None
