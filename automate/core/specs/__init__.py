"""Workflow specs: what a ``WorkflowVersion`` stores in ``trigger_spec`` and ``steps`` (JSONB).

Frozen pydantic models. Parse untrusted JSON with :func:`parse_trigger_spec`, :func:`parse_steps` or
:func:`parse_workflow`: they raise :class:`SpecError` whose message names the exact path of each problem
(``steps[1].depends_on[0]: unknown step 'x'``, ``trigger.rule.and[0]: unknown operator 'foo'``) and
never echoes config values. ``model_dump(mode="json")`` gives plain JSON that parses back to an equal spec.

Checked at save time, before anything runs: step ids unique, ``depends_on`` naming existing steps with
no self-dependency and no cycle, JSONLogic rules (``when``, ``trigger.rule``, ``$expr`` in configs)
valid, templates well formed, and a step reading ``steps.X`` in its config or ``when`` depending on X
(directly or transitively) so that X's output exists when it runs.

Modules: ``models`` (the frozen models and their per-field checks), ``graph`` (the steps as a DAG:
ids, dependencies, cycles, levels, references) and ``problems`` (located errors, joined into one
``SpecError``). Import from this package; the modules are its implementation.
"""

from __future__ import annotations

from typing import Any

# Limits not in __all__, importable from here as before.
from automate.core.specs.models import MAX_DELAY_SECONDS as MAX_DELAY_SECONDS
from automate.core.specs.models import MAX_EVENT_PATTERNS as MAX_EVENT_PATTERNS
from automate.core.specs.models import MAX_STEPS, BackoffPolicy, StepSpec, StepsSpec, TriggerSpec, WorkflowSpec
from automate.core.specs.problems import parse_as

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


def parse_backoff_policy(data: Any) -> BackoffPolicy:
    """Validate a step's ``retry`` object on its own. ``SpecError`` paths start with ``retry``."""
    return parse_as(BackoffPolicy, data, "retry")


def parse_trigger_spec(data: Any) -> TriggerSpec:
    """Validate ``WorkflowVersion.trigger_spec`` JSON. ``SpecError`` paths start with ``trigger``."""
    return parse_as(TriggerSpec, data, "trigger")


def parse_steps(data: Any) -> StepsSpec:
    """Validate ``WorkflowVersion.steps`` JSON (a list). ``SpecError`` paths start with ``steps``."""
    return parse_as(StepsSpec, data, "steps")


def parse_workflow(data: Any) -> WorkflowSpec:
    """Validate a whole ``{"trigger": ..., "steps": [...]}`` document."""
    return parse_as(WorkflowSpec, data, "")
