"""Django models. Django owns the schema; the worker reaches the same tables with SQL (automate.aio.sql)."""

from .audit import AuditLogEntry
from .events import Event
from .llm import LlmReservation, LlmSpend
from .outbox import OutboxJob
from .runs import ExecutionRun, RunStatus, StepRun, StepStatus
from .secrets import Secret
from .workflows import Workflow, WorkflowVersion

__all__ = [
    "AuditLogEntry",
    "Event",
    "ExecutionRun",
    "LlmReservation",
    "LlmSpend",
    "OutboxJob",
    "RunStatus",
    "Secret",
    "StepRun",
    "StepStatus",
    "Workflow",
    "WorkflowVersion",
]
