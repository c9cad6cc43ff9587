"""The run a log record belongs to: a contextvar the executor sets around each run (one line there).

It carries the run's id and trace id (for log lines written outside any span) and the run's secrets, so
the log formatters also scrub the values of the secrets that run resolved, not only the configured rules.
Asyncio tasks and the sync-step threads copy contextvars, so a line logged by a step's own code (a python
step calling ``logging``) is scrubbed with its run's secrets too.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from automate.core.redaction import Redactor

__all__ = ["RunLogContext", "bind_run", "current_redactor", "current_run"]


class _HasRedactor(Protocol):
    @property
    def redactor(self) -> Redactor: ...


@dataclass(frozen=True, slots=True)
class RunLogContext:
    run_id: str
    trace_id: str
    secrets: Any  # anything with a ``redactor`` attribute that may change as the run resolves secrets

    @property
    def redactor(self) -> Redactor | None:
        return getattr(self.secrets, "redactor", None)


_current: ContextVar[RunLogContext | None] = ContextVar("automate_run_log_context", default=None)


def bind_run(run_id: Any, trace_id: str, secrets: _HasRedactor | None) -> None:
    """Mark the current context (the run's task and what it starts) as belonging to this run."""
    _current.set(RunLogContext(str(run_id), trace_id or "", secrets))


def current_run() -> RunLogContext | None:
    return _current.get()


def current_redactor() -> Redactor:
    """The redactor for what is being logged now: the current run's (its secrets too), else the
    settings' (``automate.secrets.get_redactor``), else the builtin rules."""
    run = _current.get()
    if run is not None:
        redactor = run.redactor
        if redactor is not None:
            return redactor
    try:
        from automate.secrets import get_redactor

        return get_redactor()
    except Exception:  # settings broken or not importable: still never log unredacted
        from automate.core.redaction import default_redactor

        return default_redactor
