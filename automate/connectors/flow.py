"""Steps that shape a run rather than call out: ``condition`` (a branch) and ``delay`` (a durable wait).

``condition``: ``{"rule": {...}, "then": ["step_a"], "else": ["step_b"]}`` evaluates the JSONLogic rule
over the run's context and outputs ``{"result": true|false}``. The executor then records the steps of
the branch not taken as SKIPPED, and every step that can only be reached through them (all of whose
dependencies were skipped by a branch). The listed steps must depend on the condition step; the spec
graph checks that when a version is saved.

``delay``: ``{"seconds": 3600}`` or ``{"until": "2026-12-03T09:00:00Z"}`` (either may be a template). It
is durable: the step is recorded WAITING with the moment it ends, and its job is parked in the database
until then, holding no worker slot and using no attempt; it survives a worker restart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from automate.core import rules
from automate.core.errors import RuleError, SpecError

from .base import PermanentStepError, StepContext, Wait, reject_unknown_keys

__all__ = ["MAX_DELAY", "ConditionConnector", "DelayConnector", "not_taken", "parse_until"]

MAX_DELAY = timedelta(days=366)


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


class ConditionConnector:
    code: ClassVar[str] = "condition"
    needs_network: ClassVar[bool] = False
    is_llm: ClassVar[bool] = False

    def validate_config(self, config: Mapping[str, Any], *, path: str) -> None:
        reject_unknown_keys(config, ("rule", "then", "else"), path=path)
        if "rule" not in config:
            raise SpecError(f"{path}.rule: required (a JSONLogic rule over the run's context)")
        try:
            rules.validate(config["rule"])
        except RuleError as exc:
            raise SpecError(f"{path}.rule: {exc}") from None
        for branch in ("then", "else"):
            ids = config.get(branch, [])
            if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
                raise SpecError(f"{path}.{branch}: must be a list of step ids")
        if not config.get("then") and not config.get("else"):
            raise SpecError(f"{path}: a condition needs a non-empty 'then' or 'else' list of step ids")
        overlap = sorted(set(config.get("then", [])) & set(config.get("else", [])))
        if overlap:
            raise SpecError(f"{path}.else: step {overlap[0]!r} is on both branches")

    async def run(self, config: Mapping[str, Any], ctx: StepContext) -> Any:
        return {"result": rules.evaluate(config["rule"], dict(ctx.data))}


def not_taken(config: Mapping[str, Any], output: Any) -> list[str]:
    """The step ids of the branch a finished condition step did not take."""
    taken = bool(output.get("result")) if isinstance(output, Mapping) else False
    ids = config.get("else" if taken else "then", [])
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def parse_until(value: Any, field: str = "until") -> datetime:
    """An ISO 8601 moment with a time zone (``Z`` or ``+02:00``), as an aware UTC datetime."""
    if not isinstance(value, str):
        raise PermanentStepError(f"config.{field}: expected an ISO 8601 date-time string, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PermanentStepError(f"config.{field}: {value[:64]!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise PermanentStepError(f"config.{field}: {value[:64]!r} has no time zone (add Z or an offset)")
    return moment.astimezone(UTC)


class DelayConnector:
    code: ClassVar[str] = "delay"
    needs_network: ClassVar[bool] = False
    is_llm: ClassVar[bool] = False

    def validate_config(self, config: Mapping[str, Any], *, path: str) -> None:
        reject_unknown_keys(config, ("seconds", "until"), path=path)
        if ("seconds" in config) == ("until" in config):
            raise SpecError(f"{path}: give exactly one of 'seconds' or 'until'")
        if "seconds" in config and not _templated(config["seconds"]):
            try:
                self._seconds(config["seconds"])
            except PermanentStepError as exc:
                raise SpecError(f"{path}.seconds: {str(exc).split(': ', 1)[1]}") from None
        if "until" in config and not _templated(config["until"]):
            try:
                parse_until(config["until"])
            except PermanentStepError as exc:
                raise SpecError(f"{path}.until: {str(exc).split(': ', 1)[1]}") from None

    @staticmethod
    def _seconds(value: Any) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise PermanentStepError(f"config.seconds: {value[:64]!r} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise PermanentStepError(f"config.seconds: expected a finite number, got {value!r}")
        if value < 0 or value > MAX_DELAY.total_seconds():
            raise PermanentStepError(f"config.seconds: must be between 0 and {int(MAX_DELAY.total_seconds())}")
        return float(value)

    async def run(self, config: Mapping[str, Any], ctx: StepContext) -> Any:
        now = datetime.now(UTC)
        if "seconds" in config:
            until = now + timedelta(seconds=self._seconds(config["seconds"]))
        else:
            until = parse_until(config.get("until"))
            if until - now > MAX_DELAY:
                raise PermanentStepError(f"config.until: more than {MAX_DELAY.days} days ahead")
        output = {"until": until.isoformat()}
        if until > now:
            raise Wait(until, output)
        return output
