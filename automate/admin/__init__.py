"""The admin: every model of the app, read-only where the records are immutable, with the operator's
actions (retry, cancel, replay, requeue: each audited) and a rule tester. One module per model group:

    workflows   Workflow (a form that publishes new versions), WorkflowVersion, the rule tester view
    runs        ExecutionRun (step timeline; retry, cancel), StepRun
    events      Event (replay), AuditLogEntry
    outbox      OutboxJob (requeue dead letters)
    secrets     Secret (write-only values)
    extra       models added by other features (the LLM budget), registered read-only
"""

from . import events, outbox, runs, secrets, workflows  # noqa: F401  (registers the model admins)
from .extra import register_remaining
from .operations import OperationRefused, cancel_run, replay_event, requeue_job, retry_run

__all__ = ["OperationRefused", "cancel_run", "replay_event", "requeue_job", "retry_run"]

register_remaining()  # last: whatever the modules above did not register
