"""The exception hierarchy. One root, ``AutomateError``; exceptions that carry a decision carry data."""

from __future__ import annotations

__all__ = [
    "AutomateError",
    "ImmutableRecordError",
    "RetryLater",
    "RuleError",
    "RuleLimitError",
    "SecretNotFound",
    "SpecError",
    "TemplateError",
    "UnsafeAddressError",
]


class AutomateError(Exception):
    """Root of every error this project raises on purpose."""


class RuleError(AutomateError, ValueError):
    """A JSONLogic rule is malformed. ``path`` is the JSON path of the offending node (``$.and[1]``)."""

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(f"{message} at {path}")
        self.path = path
        self.reason = message


class RuleLimitError(RuleError):
    """A rule exceeded a limit (depth, node count, reduce work) set against abuse."""


class SpecError(AutomateError, ValueError):
    """A workflow, step or trigger spec is invalid. The message names the exact path."""


class TemplateError(AutomateError, ValueError):
    """A template could not be rendered; names the step and the path."""


class SecretNotFound(AutomateError, LookupError):
    """A ``$secret:NAME`` reference did not resolve. Carries the reference, never a value."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"secret not found: {ref}")
        self.ref = ref


class UnsafeAddressError(AutomateError, ValueError):
    """An address or URL host is not allowed by the SSRF policy."""


class ImmutableRecordError(AutomateError):
    """An UPDATE of an immutable or append-only record was attempted."""


class RetryLater(AutomateError):  # a decision, not an error
    """A step asks to be retried after ``delay`` seconds (e.g. HTTP 429 with Retry-After)."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry later")
        self.delay = delay
        self.reason = reason
