"""The connector seam: every step type implements ``Connector``; the executor calls nothing else."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from automate.core.errors import AutomateError, RetryLater, SpecError

__all__ = [
    "Connector",
    "PermanentStepError",
    "StepContext",
    "TransientStepError",
    "Wait",
    "classify_failure",
    "reject_unknown_keys",
]


class TransientStepError(AutomateError):
    """A failure worth retrying (timeouts, connection errors, 5xx)."""


class PermanentStepError(AutomateError):
    """A failure that retrying cannot fix; the step fails at once."""


class Wait(AutomateError):  # a decision, not an error
    """Raised by a step that must wait until ``until`` (an aware datetime): the worker records the step
    WAITING with ``{"until": ...}`` and parks its job in the database until then, holding no slot and
    using no attempt. On resume the step succeeds once the time has come, without running again."""

    def __init__(self, until: Any, output: Any = None) -> None:
        super().__init__(f"waiting until {until.isoformat()}")
        self.until = until
        self.output = output


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a connector may know about the step it runs."""

    run_id: str
    step_id: str
    attempt: int
    workflow: str
    event: Mapping[str, Any] = field(repr=False)
    # Writes an audit entry (action, resource, details) with the run's group commit; details are
    # redacted with the run's secrets. None outside a worker (then audit() does nothing).
    auditor: Callable[[str, str, dict[str, Any]], None] | None = field(default=None, repr=False, compare=False)
    # The run's context as rules see it: {"event": ..., "steps": {"<id>": {"output": ...}}, "run": ...}.
    data: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts and crash recovery: pass it on to services that deduplicate."""
        return f"{self.run_id}:{self.step_id}"

    def audit(self, action: str, resource: str, details: dict[str, Any] | None = None) -> None:
        """Record a policy decision about this step (``policy.ssrf_denied``, ...) in the audit log."""
        if self.auditor is not None:
            self.auditor(action, resource, {"run_id": self.run_id, "step": self.step_id, **(details or {})})


@runtime_checkable
class Connector(Protocol):
    """A step type. Capabilities are declared so policy can check them when a version is saved."""

    code: ClassVar[str]
    needs_network: ClassVar[bool]
    is_llm: ClassVar[bool]

    def validate_config(self, config: Mapping[str, Any], *, path: str) -> None:
        """Raise ``SpecError`` naming ``path`` (``steps[2].config``) for a config that can never run."""

    async def run(self, config: Mapping[str, Any], ctx: StepContext) -> Any:
        """Do the step's work with the rendered ``config``; return a JSON-serialisable output."""


def classify_failure(exc: BaseException) -> tuple[bool, float | None]:
    """``(transient, delay)``: whether a failure may be retried, and a delay the failure asked for."""
    if isinstance(exc, RetryLater):
        return True, exc.delay
    if isinstance(exc, TransientStepError):
        return True, None
    if isinstance(exc, PermanentStepError):
        return False, None
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError):
        return True, None
    return _httpx_transient(exc), None


def _httpx_transient(exc: BaseException) -> bool:
    """httpx's timeouts, network errors (connect, read, write, close) and a server's broken reply
    (``RemoteProtocolError``) are transient. Its other transport errors are not: an unsupported scheme or a
    request that breaks the protocol (``LocalProtocolError``) fails the same way on every attempt.

    httpx is looked up in ``sys.modules``: if nothing imported it, no exception can be one of its own (and
    classifying a failure never pays for importing it)."""
    httpx = sys.modules.get("httpx")
    if httpx is None:
        return False
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def reject_unknown_keys(config: Mapping[str, Any], known: Iterable[str], *, path: str) -> None:
    """``SpecError`` naming ``<path>.<key>`` for the first key of ``config`` not in ``known``."""
    known = tuple(known)
    for key in config:
        if key not in known:
            raise SpecError(f"{path}.{key}: unknown key (known: {', '.join(known)})")
