"""Workflow specs: what a ``WorkflowVersion`` stores in ``trigger_spec`` and ``steps`` (JSONB).

Frozen pydantic models. Parse untrusted JSON with :func:`parse_trigger_spec`, :func:`parse_steps` or
:func:`parse_workflow`: they raise :class:`SpecError` whose message names the exact path of each problem
(``steps[1].depends_on[0]: unknown step 'x'``, ``trigger.rule.and[0]: unknown operator 'foo'``) and
never echoes config values. ``model_dump(mode="json")`` gives plain JSON that parses back to an equal spec.

Checked at save time, before anything runs: step ids unique, ``depends_on`` naming existing steps with
no self-dependency and no cycle, JSONLogic rules (``when``, ``trigger.rule``, ``$expr`` in configs)
valid, templates well formed, and a step reading ``steps.X`` in its config or ``when`` depending on X
(directly or transitively) so that X's output exists when it runs.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    RootModel,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from automate.core import rules
from automate.core.errors import RuleError, SpecError
from automate.core.templating import MAX_DEPTH, TemplateSyntaxError, find_references, format_location

__all__ = [
    "MAX_STEPS",
    "BackoffPolicy",
    "StepSpec",
    "StepsSpec",
    "TriggerSpec",
    "WorkflowSpec",
    "parse_backoff_policy",
    "parse_steps",
    "parse_trigger_spec",
    "parse_workflow",
]

MAX_STEPS = 500
MAX_EVENT_PATTERNS = 100
MAX_DELAY_SECONDS = 7 * 24 * 3600.0

_STEP_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_CONNECTOR = re.compile(r"[a-z][a-z0-9_.]{0,99}")
_EVENT_PATTERN = re.compile(r"[^\s\[\]]{1,200}")


class _Problem(ValueError):
    """A validation error located below the field that raised it (``sub`` is ``.and[1]``, ``[2].id``)."""

    def __init__(self, sub: str, reason: str) -> None:
        super().__init__(reason)
        self.sub = sub
        self.reason = reason


def _sub(*loc: str | int) -> str:
    text = format_location(loc, "$")
    return text[1:]  # ".a[1]" / "[2].id": ready to append to any path


def _rule_problem(exc: RuleError, prefix: str = "") -> _Problem:
    path = exc.path
    sub = path[1:] if path.startswith("$") else f".{path}"
    return _Problem(prefix + sub, exc.reason)


def _validate_rule(rule: Any) -> Any:
    rule = _json_value(rule, (), 0)
    try:
        rules.validate(rule)
    except RuleError as exc:
        raise _rule_problem(exc) from None
    return rule


def _json_value(value: Any, loc: tuple[str | int, ...], depth: int) -> Any:
    """A deep copy of ``value`` if it is plain JSON (what JSONB stores); a located error otherwise.

    Error text names the location and the offending type, never the value.
    """
    if depth > MAX_DEPTH:
        raise _Problem(_sub(*loc), f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Problem(_sub(*loc), "numbers must be finite (no NaN or Infinity in JSON)")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Problem(_sub(*loc), f"object keys must be strings, not {type(key).__name__}")
            out[key] = _json_value(item, (*loc, key), depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_json_value(item, (*loc, index), depth + 1) for index, item in enumerate(value)]
    raise _Problem(_sub(*loc), f"value of type {type(value).__name__} is not a JSON value")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BackoffPolicy(_Frozen):
    """How long to wait between retries of a step; see :func:`automate.core.backoff.compute_delay`."""

    kind: Literal["exponential", "fixed"] = "exponential"
    base_seconds: float = Field(1.0, gt=0, le=MAX_DELAY_SECONDS, allow_inf_nan=False, strict=True)
    max_seconds: float = Field(300.0, gt=0, le=MAX_DELAY_SECONDS, allow_inf_nan=False, strict=True)
    jitter: Literal["full", "none"] = "full"

    @model_validator(mode="after")
    def _max_not_below_base(self) -> BackoffPolicy:
        if self.max_seconds < self.base_seconds:
            raise _Problem(".max_seconds", "must be >= base_seconds")
        return self


class StepSpec(_Frozen):
    """One step: a connector ``type`` run with a templated ``config`` once its ``depends_on`` are done.

    ``when`` is a JSONLogic rule over the run context (``event``, ``steps``, ``run``); ``None`` means
    always. ``timeout_seconds`` / ``max_retries`` of ``None`` take the ``EXECUTION`` settings.
    """

    id: str = Field(strict=True)
    type: str = Field(strict=True)
    config: dict[str, Any] = Field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    when: Any = None
    timeout_seconds: float | None = Field(None, gt=0, le=MAX_DELAY_SECONDS, allow_inf_nan=False, strict=True)
    max_retries: int | None = Field(None, ge=0, le=100, strict=True)
    retry: BackoffPolicy = Field(default_factory=BackoffPolicy)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _STEP_ID.fullmatch(value):
            raise ValueError("must start with a letter or '_' and contain only letters, digits, '_' or '-' (max 64)")
        return value

    @field_validator("type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        if not _CONNECTOR.fullmatch(value):
            raise ValueError("must be a connector code: lowercase letters, digits, '_' or '.', starting with a letter")
        return value

    @field_validator("config", mode="before")
    @classmethod
    def _check_config(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError("must be a JSON object")
        return _json_value(value, (), 0)

    @field_validator("depends_on", mode="before")
    @classmethod
    def _check_depends_on(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise ValueError("must be a list of step ids")
        seen: set[Any] = set()
        for index, item in enumerate(value):
            if isinstance(item, str) and item in seen:
                raise _Problem(_sub(index), f"duplicate dependency {item!r}")
            if isinstance(item, str):
                seen.add(item)
        return value

    @field_validator("when", mode="before")
    @classmethod
    def _check_when(cls, value: Any) -> Any:
        return None if value is None else _validate_rule(value)


class TriggerSpec(_Frozen):
    """Which events start a workflow: event types or ``*``/``?`` globs, then an optional rule.

    ``event`` is one type (``"order.created"``) or a list (``["order.*", "invoice.paid"]``); a single
    pattern dumps back as a string. ``*`` matches any run of characters, dots included (fnmatchcase
    semantics); ``[...]`` sets are not supported. ``rule`` is JSONLogic evaluated against the context
    the matcher passes (``None`` accepts every event of a matching type).
    """

    event: tuple[str, ...]
    rule: Any = None
    _type_regex: re.Pattern[str] = PrivateAttr()

    @field_validator("event", mode="before")
    @classmethod
    def _check_event(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, list | tuple):
            raise ValueError("must be an event type or a list of them")
        if not 1 <= len(value) <= MAX_EVENT_PATTERNS:
            raise ValueError(f"must list 1 to {MAX_EVENT_PATTERNS} event types")
        for index, pattern in enumerate(value):
            if not isinstance(pattern, str):
                raise _Problem(_sub(index), "must be a string")
            if not _EVENT_PATTERN.fullmatch(pattern):
                raise _Problem(
                    _sub(index),
                    "must be 1-200 characters without whitespace; the only wildcards are * and ?",
                )
        return tuple(value)

    @field_validator("rule", mode="before")
    @classmethod
    def _check_rule(cls, value: Any) -> Any:
        return None if value is None else _validate_rule(value)

    @field_serializer("event")
    def _dump_event(self, event: tuple[str, ...]) -> str | list[str]:
        return event[0] if len(event) == 1 else list(event)

    def model_post_init(self, context: Any, /) -> None:
        # fnmatch.translate gives fnmatchcase semantics with its guard against catastrophic backtracking;
        # each alternative ends in \Z, so re.match is a full match. Compiled once per spec.
        self._type_regex = re.compile("|".join(fnmatch.translate(pattern) for pattern in self.event))

    def matches_type(self, event_type: str) -> bool:
        """Whether ``event_type`` matches one of the ``event`` patterns (case-sensitive)."""
        return self._type_regex.match(event_type) is not None

    def matches(self, event_type: str, context: Any) -> bool:
        """Type first (cheap), then ``rule`` evaluated against ``context``."""
        if not self.matches_type(event_type):
            return False
        return self.rule is None or rules.evaluate(self.rule, context)


class StepsSpec(RootModel[tuple[StepSpec, ...]]):
    """The steps of a workflow version, as a DAG. Dumps to (and parses from) a JSON list."""

    model_config = ConfigDict(frozen=True)
    root: tuple[StepSpec, ...]
    _levels: tuple[tuple[str, ...], ...] = PrivateAttr(default=())
    _ancestors: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _check_length(cls, value: Any) -> Any:
        # Checked before the items so that one bad step is not also reported as "too few steps".
        if isinstance(value, list | tuple) and not 1 <= len(value) <= MAX_STEPS:
            raise ValueError(f"a workflow has 1 to {MAX_STEPS} steps, not {len(value)}")
        return value

    @model_validator(mode="after")
    def _check_graph(self) -> StepsSpec:
        steps = self.root
        index_of: dict[str, int] = {}
        for index, step in enumerate(steps):
            if step.id in index_of:
                raise _Problem(
                    _sub(index, "id"), f"duplicate step id {step.id!r} (first at steps[{index_of[step.id]}])"
                )
            index_of[step.id] = index
        for index, step in enumerate(steps):
            for position, dep in enumerate(step.depends_on):
                if dep == step.id:
                    raise _Problem(_sub(index, "depends_on", position), f"step {dep!r} depends on itself")
                if dep not in index_of:
                    raise _Problem(_sub(index, "depends_on", position), f"unknown step {dep!r}")
        _raise_on_cycle(steps, index_of)
        self._levels, self._ancestors = _layers(steps)
        for index, step in enumerate(steps):
            _check_references(index, step, self._ancestors[step.id], index_of)
        return self

    def __iter__(self) -> Iterator[StepSpec]:  # type: ignore[override]  # iterate steps, not fields
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)

    def __getitem__(self, index: int) -> StepSpec:
        return self.root[index]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(step.id for step in self.root)

    def get(self, step_id: str) -> StepSpec | None:
        return next((step for step in self.root if step.id == step_id), None)

    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Step ids by level: level 0 depends on nothing, level n on steps of levels < n (at least one
        of n-1). Steps of one level may run concurrently; within a level, declaration order."""
        return self._levels

    def order(self) -> tuple[str, ...]:
        """A topological order: every step after all of its dependencies (levels, flattened)."""
        return tuple(step_id for level in self._levels for step_id in level)

    def ancestors(self, step_id: str) -> frozenset[str]:
        """Every step ``step_id`` depends on, directly or transitively. ``KeyError`` if unknown."""
        return self._ancestors[step_id]


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
                raise _Problem(
                    _sub(index_of[head], "depends_on", position),
                    "dependency cycle " + " -> ".join([*cycle, head]),
                )
            elif colour[dep] == white:
                colour[dep] = grey
                stack.append((dep, iter(steps[index_of[dep]].depends_on)))


def _layers(
    steps: tuple[StepSpec, ...],
) -> tuple[tuple[tuple[str, ...], ...], dict[str, frozenset[str]]]:
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
            raise _Problem(_sub(index, field, *loc), exc.reason) from None
        for ref in references:
            loc = ref.loc[1:] if field == "when" else ref.loc  # "when" was wrapped in {"$expr": ...}
            where = _sub(index, field, *loc)
            if ref.kind == "expr" and field == "config":
                try:
                    rules.validate(ref.value)
                except RuleError as exc:
                    raise _rule_problem(exc, where) from None
            elif ref.kind == "path":
                _check_step_path(ref.value, step, ancestors, known, where)


def _check_step_path(
    path: str, step: StepSpec, ancestors: frozenset[str], known: Mapping[str, int], where: str
) -> None:
    segments = path.split(".")
    if segments[0] != "steps":
        return
    if len(segments) < 2 or not segments[1]:
        raise _Problem(where, f"template path {path!r} must name a step (steps.<id>.output...)")
    target = segments[1]
    if target == step.id:
        raise _Problem(where, f"template path {path!r} refers to this step's own output")
    if target not in known:
        raise _Problem(where, f"template path {path!r} refers to unknown step {target!r}")
    if target not in ancestors:
        raise _Problem(
            where,
            f"template path {path!r} refers to step {target!r}, which this step does not depend on "
            "(add it to depends_on)",
        )


class WorkflowSpec(_Frozen):
    """A whole workflow: ``{"trigger": {...}, "steps": [...]}``."""

    trigger: TriggerSpec
    steps: StepsSpec


# --- parsing with located errors -----------------------------------------------------------------

_FRIENDLY = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
}


def _spec_error(exc: ValidationError, root: str) -> SpecError:
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        path = format_location(tuple(err["loc"]), root)
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _Problem):
            path += cause.sub
            message = cause.reason
        elif err["type"] == "value_error" and cause is not None:
            message = str(cause)
        else:
            message = _FRIENDLY.get(err["type"], err["msg"])
        problems.append((path or "$", message))
    error = SpecError("; ".join(f"{path}: {message}" for path, message in problems))
    error.problems = tuple(problems)  # type: ignore[attr-defined]  # for forms: (path, message) pairs
    return error


def parse_backoff_policy(data: Any) -> BackoffPolicy:
    """Validate a step's ``retry`` object on its own. ``SpecError`` paths start with ``retry``."""
    try:
        return BackoffPolicy.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, "retry") from None


def parse_trigger_spec(data: Any) -> TriggerSpec:
    """Validate ``WorkflowVersion.trigger_spec`` JSON. ``SpecError`` paths start with ``trigger``."""
    try:
        return TriggerSpec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, "trigger") from None


def parse_steps(data: Any) -> StepsSpec:
    """Validate ``WorkflowVersion.steps`` JSON (a list). ``SpecError`` paths start with ``steps``."""
    try:
        return StepsSpec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, "steps") from None


def parse_workflow(data: Any) -> WorkflowSpec:
    """Validate a whole ``{"trigger": ..., "steps": [...]}`` document."""
    try:
        return WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, "") from None
