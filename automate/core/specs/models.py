"""The spec models: frozen pydantic models of a trigger, a step, the steps (a DAG) and a whole workflow.

Each field is checked where it is declared (ids, connector codes, plain JSON configs, JSONLogic rules,
event patterns, retry policies); the steps as a whole are checked by :mod:`automate.core.specs.graph`.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    RootModel,
    field_serializer,
    field_validator,
    model_validator,
)

from automate.core import rules
from automate.core.errors import RuleError
from automate.core.specs.graph import check_graph
from automate.core.specs.problems import Problem, rule_problem, sub
from automate.core.templating import MAX_DEPTH

__all__ = ["MAX_STEPS", "BackoffPolicy", "StepSpec", "StepsSpec", "TriggerSpec", "WorkflowSpec"]

MAX_STEPS = 500
MAX_EVENT_PATTERNS = 100
MAX_DELAY_SECONDS = 7 * 24 * 3600.0

_STEP_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_CONNECTOR = re.compile(r"[a-z][a-z0-9_.]{0,99}")
_EVENT_PATTERN = re.compile(r"[^\s\[\]]{1,200}")


def _validate_rule(rule: Any) -> Any:
    rule = _json_value(rule, (), 0)
    try:
        rules.validate(rule)
    except RuleError as exc:
        raise rule_problem(exc) from None
    return rule


def _storable_text(text: str, loc: tuple[str | int, ...]) -> None:
    """PostgreSQL's jsonb refuses NUL (\\u0000) and text that is not UTF-8 (a lone surrogate)."""
    if "\x00" in text:
        raise Problem(sub(*loc), "text contains a NUL character, which PostgreSQL cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(sub(*loc), "text contains a lone surrogate, which is not UTF-8") from None


def _json_value(value: Any, loc: tuple[str | int, ...], depth: int) -> Any:
    """A deep copy of ``value`` if it is plain JSON (what JSONB stores); a located error otherwise.

    Error text names the location and the offending type, never the value.
    """
    if depth > MAX_DEPTH:
        raise Problem(sub(*loc), f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _storable_text(value, loc)
        return value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Problem(sub(*loc), "numbers must be finite (no NaN or Infinity in JSON)")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise Problem(sub(*loc), f"object keys must be strings, not {type(key).__name__}")
            _storable_text(key, loc)
            out[key] = _json_value(item, (*loc, key), depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_json_value(item, (*loc, index), depth + 1) for index, item in enumerate(value)]
    raise Problem(sub(*loc), f"value of type {type(value).__name__} is not a JSON value")


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
            raise Problem(".max_seconds", "must be >= base_seconds")
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
                raise Problem(sub(index), f"duplicate dependency {item!r}")
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
                raise Problem(sub(index), "must be a string")
            if not _EVENT_PATTERN.fullmatch(pattern):
                raise Problem(
                    sub(index),
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
        return self.matcher()(event_type, context)

    def matcher(self) -> Callable[[str, Any], bool]:
        """``matches`` as a function over this spec's compiled parts, read once: the worker asks every
        live version about every event, and a pydantic private attribute costs a ``__getattr__`` per read."""
        type_match, rule = self._type_regex.match, self.rule

        def matches(event_type: str, context: Any) -> bool:
            if type_match(event_type) is None:
                return False
            return rule is None or rules.evaluate(rule, context)

        return matches


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
        self._levels, self._ancestors = check_graph(self.root)
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


class WorkflowSpec(_Frozen):
    """A whole workflow: ``{"trigger": {...}, "steps": [...]}``."""

    trigger: TriggerSpec
    steps: StepsSpec
