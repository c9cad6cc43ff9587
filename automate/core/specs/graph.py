"""The steps of a workflow as a DAG: ids unique, dependencies known, no cycle, levels, and references.

:func:`check_graph` runs every check a :class:`~automate.core.specs.StepsSpec` needs once its steps are
valid one by one, and returns the levels and transitive dependencies the spec keeps. Problems are
located (``steps[0].depends_on[0]: dependency cycle a -> b -> a``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from automate.core import rules
from automate.core.errors import RuleError
from automate.core.specs.problems import Problem, rule_problem, sub
from automate.core.templating import TemplateSyntaxError, find_references

if TYPE_CHECKING:
    from automate.core.specs.models import StepSpec

__all__ = ["Levels", "check_graph"]

#: Step ids by level (level 0 depends on nothing).
Levels = tuple[tuple[str, ...], ...]


def check_graph(steps: tuple[StepSpec, ...]) -> tuple[Levels, dict[str, frozenset[str]]]:
    """Check the steps as a whole; return their levels and each step's transitive dependencies."""
    index_of: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step.id in index_of:
            raise Problem(sub(index, "id"), f"duplicate step id {step.id!r} (first at steps[{index_of[step.id]}])")
        index_of[step.id] = index
    for index, step in enumerate(steps):
        for position, dep in enumerate(step.depends_on):
            if dep == step.id:
                raise Problem(sub(index, "depends_on", position), f"step {dep!r} depends on itself")
            if dep not in index_of:
                raise Problem(sub(index, "depends_on", position), f"unknown step {dep!r}")
    _raise_on_cycle(steps, index_of)
    levels, ancestors = _layers(steps)
    for index, step in enumerate(steps):
        _check_references(index, step, ancestors[step.id], index_of)
        if step.type == "condition":
            _check_branches(index, step, steps, ancestors, index_of)
    return levels, ancestors


def _check_branches(
    index: int, step: StepSpec, steps: tuple[StepSpec, ...], ancestors: Mapping[str, frozenset[str]],
    index_of: Mapping[str, int],
) -> None:
    """A ``condition`` step's ``then``/``else`` name steps that depend on it (directly or not), so each
    branch starts only once the condition has decided."""
    for branch in ("then", "else"):
        ids = step.config.get(branch, [])
        if not isinstance(ids, list):
            continue  # the connector's own validation names the bad shape
        for position, target in enumerate(ids):
            where = sub(index, "config", branch, position)
            if not isinstance(target, str):
                continue
            if target not in index_of:
                raise Problem(where, f"unknown step {target!r}")
            if step.id not in ancestors[target]:
                raise Problem(
                    where,
                    f"step {target!r} must depend on condition step {step.id!r} (add it to depends_on), "
                    "so it starts after the condition decides",
                )


def _raise_on_cycle(steps: tuple[StepSpec, ...], index_of: dict[str, int]) -> None:
    """Depth-first search without recursion; the first cycle found is reported, rotated to start at its
    earliest-declared step: ``steps[0].depends_on[0]: dependency cycle a -> b -> a``."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(index_of, white)
    for start in steps:
        if colour[start.id] != white:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start.id, iter(start.depends_on))]
        colour[start.id] = grey
        while stack:
            node, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                colour[node] = black
                stack.pop()
            elif colour[dep] == grey:
                path = [name for name, _ in stack]
                cycle = path[path.index(dep) :]
                first = min(range(len(cycle)), key=lambda i: index_of[cycle[i]])
                cycle = cycle[first:] + cycle[:first]
                head, nxt = cycle[0], cycle[1 % len(cycle)]
                position = steps[index_of[head]].depends_on.index(nxt)
                raise Problem(
                    sub(index_of[head], "depends_on", position),
                    "dependency cycle " + " -> ".join([*cycle, head]),
                )
            elif colour[dep] == white:
                colour[dep] = grey
                stack.append((dep, iter(steps[index_of[dep]].depends_on)))


def _layers(steps: tuple[StepSpec, ...]) -> tuple[Levels, dict[str, frozenset[str]]]:
    """Levels and transitive dependencies of an acyclic step list."""
    by_id = {step.id: step for step in steps}
    level: dict[str, int] = {}
    ancestors: dict[str, frozenset[str]] = {}

    def visit(step_id: str) -> None:
        # Iterative post-order; the graph is known to be acyclic.
        stack = [step_id]
        while stack:
            current = stack[-1]
            pending = [dep for dep in by_id[current].depends_on if dep not in level]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if current in level:
                continue
            deps = by_id[current].depends_on
            level[current] = 1 + max((level[dep] for dep in deps), default=-1)
            found: set[str] = set(deps)
            for dep in deps:
                found |= ancestors[dep]
            ancestors[current] = frozenset(found)

    for step in steps:
        visit(step.id)
    depth = max(level.values()) + 1
    levels = tuple(tuple(s.id for s in steps if level[s.id] == n) for n in range(depth))
    return levels, ancestors


def _check_references(index: int, step: StepSpec, ancestors: frozenset[str], known: Mapping[str, int]) -> None:
    """Templates well formed, ``$expr`` rules valid, ``steps.X`` only for X this step depends on."""
    sources: list[tuple[str, Any]] = [("config", step.config)]
    if step.when is not None:
        sources.append(("when", {"$expr": step.when}))
    for field, value in sources:
        try:
            references = list(find_references(value))
        except TemplateSyntaxError as exc:
            loc = exc.loc[1:] if field == "when" else exc.loc  # "when" was wrapped in {"$expr": ...}
            raise Problem(sub(index, field, *loc), exc.reason) from None
        for ref in references:
            loc = ref.loc[1:] if field == "when" else ref.loc  # "when" was wrapped in {"$expr": ...}
            where = sub(index, field, *loc)
            if ref.kind == "expr" and field == "config":
                try:
                    rules.validate(ref.value)
                except RuleError as exc:
                    raise rule_problem(exc, where) from None
            elif ref.kind == "path":
                _check_step_path(ref.value, step, ancestors, known, where)


def _check_step_path(
    path: str, step: StepSpec, ancestors: frozenset[str], known: Mapping[str, int], where: str
) -> None:
    segments = path.split(".")
    if segments[0] != "steps":
        return
    if len(segments) < 2 or not segments[1]:
        raise Problem(where, f"template path {path!r} must name a step (steps.<id>.output...)")
    target = segments[1]
    if target == step.id:
        raise Problem(where, f"template path {path!r} refers to this step's own output")
    if target not in known:
        raise Problem(where, f"template path {path!r} refers to unknown step {target!r}")
    if target not in ancestors:
        raise Problem(
            where,
            f"template path {path!r} refers to step {target!r}, which this step does not depend on "
            "(add it to depends_on)",
        )
