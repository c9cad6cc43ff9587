"""``manage.py automate_prune --older-than 30d [--dry-run] [--batch-size 1000]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from automate.conf import get_settings
from automate.retention import parse_age, prune


class Command(BaseCommand):
    help = (
        "Delete finished events older than --older-than, with their jobs, runs and step runs, in short "
        "batches that a running worker does not notice. Audit entries are pruned after "
        "DJANGO_AUTOMATE['RETENTION']['audit_log_days'] days when that is set (None keeps them for ever)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--older-than", required=True, help="an age: 30d, 12h or 90m")
        parser.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")
        parser.add_argument("--batch-size", type=int, default=1000, help="rows per statement (default 1000)")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from None
        batch_size = options["batch_size"]
        if not 1 <= batch_size <= 100_000:
            raise CommandError(f"--batch-size: {batch_size} is not between 1 and 100000")
        using = options["database"]
        if using not in connections:
            raise CommandError(f"--database: no database {using!r} in DATABASES")
        audit_days = get_settings().RETENTION.audit_log_days
        counts = prune(age, audit_log_days=audit_days, batch_size=batch_size, dry_run=options["dry_run"], using=using)
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{verb}: {counts.events} events, {counts.jobs} jobs, {counts.runs} runs, {counts.step_runs} step runs, "
            + (
                f"{counts.audit_entries} audit entries (older than {audit_days} days)"
                if audit_days is not None
                else "0 audit entries (RETENTION.audit_log_days is None: kept for ever)"
            )
        )
