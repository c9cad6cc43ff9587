"""``explain_text``: a compact, indented rendering of an explanation tree.

One line per operator; simple arguments (literals, ``var`` lookups) are shown inline, operator
arguments on their own indented lines::

    ✗ and -> false
      ✓ == (var order.total=120, 100) -> true
      ✗ in (var order.country="FR", ["US","CA"]) -> false
      · or (not evaluated)

``ascii=True`` uses ``[+]``, ``[x]`` and ``[ ]`` instead of ``✓``, ``✗`` and ``·``.
"""

from __future__ import annotations

from typing import Any

import orjson

from automate.core.rules.coerce import number_to_string
from automate.core.rules.explain import explain
from automate.core.rules.limits import DEFAULT_LIMITS, Limits

__all__ = ["explain_text", "format_value"]

_MARKS = {True: "✓", False: "✗", None: "·"}
_ASCII_MARKS = {True: "[+]", False: "[x]", None: "[ ]"}
_NOT_GIVEN: Any = object()


def format_value(value: Any, width: int = 60, ellipsis: str = "…") -> str:
    """A short JSON-like rendering of a value (numbers as JavaScript prints them)."""
    if type(value) in (int, float):
        text = number_to_string(value)
    else:
        try:
            text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # not JSON, or nested too deeply for orjson: never repr() arbitrary objects
            text = f"<{type(value).__name__}>"
    if len(text) > width:
        text = text[: max(width - len(ellipsis), 1)] + ellipsis
    return text


def _is_tree(value: Any) -> bool:
    return isinstance(value, dict) and "kind" in value and "passed" in value and "evaluated" in value


def _simple(node: dict[str, Any]) -> bool:
    """Shown inline: literals, arrays of literals, and var lookups with literal arguments."""
    if node["kind"] == "literal":
        return True
    if node["kind"] == "array" or node.get("op") == "var":
        return all(child["kind"] == "literal" for child in node["args"])
    return False


class _Renderer:
    def __init__(self, ascii_only: bool, width: int) -> None:
        self.marks = _ASCII_MARKS if ascii_only else _MARKS
        self.ellipsis = "..." if ascii_only else "…"
        self.width = width
        self.lines: list[str] = []

    def value(self, value: Any) -> str:
        return format_value(value, self.width, self.ellipsis)

    def inline(self, node: dict[str, Any]) -> str:
        if node["kind"] == "literal":
            return self.value(node["value"])
        if node["kind"] == "array":
            return "[" + ", ".join(self.inline(child) for child in node["args"]) + "]"
        if node.get("op") == "var":
            key = node["args"][0]["value"] if node["args"] else None
            path = "(data)" if key is None or key == "" else key if isinstance(key, str) else self.value(key)
            if not node["evaluated"]:
                return f"var {path}"
            return f"var {path}={self.value(node['value'])}"
        return f"{node.get('op', '?')}{self.ellipsis}"

    def _arg(self, node: dict[str, Any]) -> str:
        if node.get("per_item"):
            return f"{node.get('op', 'value')}{self.ellipsis} per element"
        return self.inline(node)

    def render(self, node: dict[str, Any], depth: int, label: str = "") -> None:
        pad = "  " * depth
        mark = self.marks[node["passed"] if node["evaluated"] else None]
        if node["kind"] == "op":
            args = node["args"]
            head = f"{label}{mark} {node['op']}"
            if _simple(node):  # a var lookup
                head = f"{label}{mark} {self.inline(node)}"
                args = []
            elif any(_simple(child) for child in args):
                head += " (" + ", ".join(self._arg(child) for child in args) + ")"
        else:
            head, args = f"{label}{mark} {self.inline(node)}", []
        if not node["evaluated"]:
            self.lines.append(f"{pad}{head} (not evaluated)")
            return
        self.lines.append(f"{pad}{head} -> {self.value(node['value'])}")
        for child in args:
            if not _simple(child) and not child.get("per_item"):
                self.render(child, depth + 1)
        iterations = node.get("iterations")
        if iterations is not None:
            for step in iterations:
                self.render(step["node"], depth + 1, label=f"[{step['index']}] ")
            evaluated = node.get("iterations_evaluated", 0)
            hidden = evaluated - len(iterations)
            skipped = node.get("iterations_total", 0) - evaluated
            if hidden > 0:
                self.lines.append(f"{pad}  {self.ellipsis} {hidden} more element(s) evaluated, not shown")
            if skipped > 0:
                self.lines.append(f"{pad}  {self.ellipsis} {skipped} element(s) not evaluated")


def explain_text(
    tree_or_rule: Any,
    context: Any = _NOT_GIVEN,
    *,
    ascii: bool = False,
    width: int = 60,
    limits: Limits = DEFAULT_LIMITS,
) -> str:
    """Render an explanation tree, or explain ``tree_or_rule`` against ``context`` and render that."""
    if context is _NOT_GIVEN and _is_tree(tree_or_rule):
        tree = tree_or_rule
    else:
        tree = explain(tree_or_rule, None if context is _NOT_GIVEN else context, limits=limits)
    renderer = _Renderer(ascii, width)
    renderer.render(tree, 0)
    return "\n".join(renderer.lines)
