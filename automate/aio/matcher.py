"""The workflow cache: the live version of every enabled workflow, parsed once.

It is reloaded when a ``NOTIFY automate_workflows`` arrives (sent after a workflow or version is saved)
and at least every ``max_age`` seconds, so a change made by raw SQL is seen too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from automate.core.errors import AutomateError
from automate.core.specs import StepsSpec, TriggerSpec, parse_steps, parse_trigger_spec

from .store import JobStore, VersionRow

__all__ = ["VersionEntry", "WorkflowCache"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VersionEntry:
    id: int
    slug: str
    version_num: int
    trigger: TriggerSpec | None
    steps: StepsSpec | None
    error: str = ""  # why the stored spec cannot run (it bypassed validation, e.g. raw SQL)
    matches: Callable[[str, Any], bool] | None = None  # trigger.matcher(), built once per version


def _parse(row: VersionRow) -> VersionEntry:
    try:
        steps = parse_steps(row.steps)
    except AutomateError as exc:
        return VersionEntry(row.id, row.slug, row.version_num, None, None, f"invalid steps: {exc}")
    try:
        trigger = parse_trigger_spec(row.trigger_spec) if row.trigger_spec else None
    except AutomateError as exc:
        return VersionEntry(row.id, row.slug, row.version_num, None, steps, f"invalid trigger_spec: {exc}")
    if trigger is None:
        return VersionEntry(row.id, row.slug, row.version_num, None, steps)
    return VersionEntry(row.id, row.slug, row.version_num, trigger, steps, "", trigger.matcher())


class WorkflowCache:
    def __init__(self, store: JobStore, *, max_age: float = 5.0) -> None:
        self.store = store
        self.max_age = max_age
        self._live: list[VersionEntry] = []
        self._by_id: dict[int, VersionEntry] = {}
        self._loaded_at = float("-inf")
        self._generation = 0  # bumped by invalidate(); a reload that overlapped one stays stale
        self.reloads = 0

    def invalidate(self) -> None:
        self._generation += 1
        self._loaded_at = float("-inf")

    async def live(self) -> list[VersionEntry]:
        if time.monotonic() - self._loaded_at > self.max_age:
            await self._reload()
        return self._live

    async def _reload(self) -> None:
        generation = self._generation
        rows = await self.store.live_versions()
        # A version is immutable (a trigger refuses UPDATE): one already parsed is reused, not parsed again
        # at every reload. Its workflow's slug can change, so that is compared too.
        known = self._by_id
        entries = [
            e if (e := known.get(r.id)) is not None and e.slug == r.slug and e.version_num == r.version_num
            else _parse(r)
            for r in rows
        ]
        for entry in entries:
            if entry.error and known.get(entry.id) is not entry:
                log.error("automate.workflow.invalid_spec", extra={"workflow": entry.slug, "error": entry.error})
        self._live = entries
        self._by_id.update({e.id: e for e in entries})
        # A NOTIFY that arrived while the rows were read may be about a change the read did not see:
        # then the next match reads again instead of trusting this load for max_age.
        self._loaded_at = time.monotonic() if generation == self._generation else float("-inf")
        self.reloads += 1

    async def get(self, version_id: int) -> VersionEntry | None:
        entry = self._by_id.get(version_id)
        if entry is None:
            row = await self.store.version(version_id)
            if row is None:
                return None
            entry = self._by_id[version_id] = _parse(row)
        return entry

    async def match(self, event_type: str, context: dict[str, Any]) -> list[VersionEntry]:
        """The live versions whose trigger matches the event (type glob, then rule)."""
        matched = []
        live = self._live if time.monotonic() - self._loaded_at <= self.max_age else await self.live()
        for entry in live:
            if entry.trigger is None or entry.steps is None:
                continue
            try:
                if entry.matches is not None and entry.matches(event_type, context):
                    matched.append(entry)
            except Exception as exc:  # a rule that fails on this event does not match it (and says why)
                log.warning(
                    "automate.trigger.rule_error",
                    extra={"workflow": entry.slug, "event_type": event_type, "error": str(exc)},
                )
        return matched
