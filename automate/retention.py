"""Retention: delete finished work older than a cutoff, in short batches (``manage.py automate_prune``).

An event is deleted together with its jobs, runs and step runs, and only once all of them finished
before the cutoff (jobs COMPLETED or FAILED, runs SUCCEEDED, FAILED or CANCELLED). Each batch is its own
transaction of a few statements (see ``queries.PRUNE_*``) under ``lock_timeout``, so a running worker is
never held up for long: rows it is working on are either skipped (``SKIP LOCKED``) or re-read after the
lock and left alone when they turned out unfinished. The audit log has its own age,
``RETENTION.audit_log_days`` (``None`` keeps it for ever).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.utils import timezone

from . import queries

__all__ = ["PruneCounts", "parse_age", "prune"]

log = logging.getLogger(__name__)

_AGE_RE = re.compile(r"([0-9]{1,6})([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
_MAX_CONSECUTIVE_ERRORS = 3
_MAX_AGE = dt.timedelta(days=36_500)


def parse_age(text: str) -> dt.timedelta:
    """``"30d"``, ``"12h"`` or ``"90m"`` as a timedelta; ``ValueError`` saying the accepted forms."""
    match = _AGE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not an age: use a positive number of days, hours or minutes: 30d, 12h, 90m")
    age = dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if age > _MAX_AGE:
        raise ValueError(f"{text!r} is more than 100 years: use a number of days, hours or minutes: 30d, 12h, 90m")
    return age


@dataclass
class PruneCounts:
    step_runs: int = 0
    runs: int = 0
    jobs: int = 0
    events: int = 0
    audit_entries: int = 0
    batches: int = 0
    skipped_events: set[Any] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, int]:
        return {
            "step_runs": self.step_runs,
            "runs": self.runs,
            "jobs": self.jobs,
            "events": self.events,
            "audit_entries": self.audit_entries,
        }


def _batch(cursor: Any, cutoff: dt.datetime, limit: int, counts: PruneCounts) -> int:
    """One batch of events (in the caller's transaction); the number of candidate events it saw."""
    cursor.execute(queries.PRUNE_LOCK_TIMEOUT)
    cursor.execute(
        queries.PRUNE_EVENT_BATCH, {"cutoff": cutoff, "limit": limit, "skip": list(counts.skipped_events)}
    )
    ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return 0
    unfinished: set[Any] = set()
    for statement in (queries.PRUNE_LOCK_JOBS, queries.PRUNE_LOCK_RUNS):
        cursor.execute(statement, {"ids": ids, "cutoff": cutoff})
        unfinished.update(event_id for event_id, done in cursor.fetchall() if not done)
    if unfinished:  # changed since the batch was chosen (a requeue, a retry): left alone
        counts.skipped_events.update(unfinished)
        ids = [i for i in ids if i not in unfinished]
    if ids:
        cursor.execute(queries.PRUNE_DELETE_EVENTS, {"ids": ids})
        steps, runs, jobs, events = cursor.fetchone()
        counts.step_runs += steps
        counts.runs += runs
        counts.jobs += jobs
        counts.events += events
    return len(ids) + len(unfinished)


def _repeat(using: str, run_batch: Any, counts: PruneCounts, what: str) -> None:
    errors = 0
    while True:
        try:
            with transaction.atomic(using=using), connections[using].cursor() as cursor:
                seen = run_batch(cursor)
        except OperationalError as exc:  # a lock wait that timed out, a deadlock: try again, then give up
            errors += 1
            log.warning("automate.prune.batch_failed", extra={"what": what, "error": type(exc).__name__})
            if errors >= _MAX_CONSECUTIVE_ERRORS:
                raise
            continue
        errors = 0
        counts.batches += 1
        if not seen:
            return


def prune(
    older_than: dt.timedelta,
    *,
    audit_log_days: int | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    using: str = DEFAULT_DB_ALIAS,
    now: dt.datetime | None = None,
) -> PruneCounts:
    """Delete finished events (with their jobs, runs and step runs) finished before ``now - older_than``,
    and audit entries older than ``audit_log_days`` when it is set. ``dry_run`` counts instead."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    current = now or timezone.now()
    cutoff = current - older_than
    audit_cutoff = current - dt.timedelta(days=audit_log_days) if audit_log_days is not None else None
    counts = PruneCounts()
    if dry_run:
        with connections[using].cursor() as cursor:
            cursor.execute(queries.PRUNE_COUNT, {"cutoff": cutoff})
            counts.step_runs, counts.runs, counts.jobs, counts.events = cursor.fetchone()
            if audit_cutoff is not None:
                cursor.execute(queries.PRUNE_AUDIT_COUNT, {"audit_cutoff": audit_cutoff})
                counts.audit_entries = cursor.fetchone()[0]
        return counts

    _repeat(using, lambda cursor: _batch(cursor, cutoff, batch_size, counts), counts, "events")

    def detached(cursor: Any) -> int:
        cursor.execute(queries.PRUNE_DETACHED_JOBS, {"cutoff": cutoff, "limit": batch_size})
        counts.jobs += cursor.rowcount
        return int(cursor.rowcount)

    _repeat(using, detached, counts, "jobs")
    if audit_cutoff is not None:

        def audit_batch(cursor: Any) -> int:
            cursor.execute(queries.PRUNE_AUDIT_BATCH, {"cutoff": audit_cutoff, "limit": batch_size})
            counts.audit_entries += cursor.rowcount
            return int(cursor.rowcount)

        _repeat(using, audit_batch, counts, "audit")
    return counts
