"""``manage.py demo``: migrate, emit a few events, and show them with their outbox rows."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from automate.models import Event, OutboxJob
from automate.runtime import emit_event


class Command(BaseCommand):
    help = "Migrate the database, emit demo events and show them with their outbox jobs."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--events", type=int, default=5, help="how many events to emit")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("database migrated")
        with transaction.atomic():
            ids = [
                emit_event("order.created", {"order": {"id": i, "total": 40 + 30 * i}}, source="demo")
                for i in range(options["events"])
            ]
        emit_event("order.created", {"order": {"id": 0}}, dedupe_key=f"demo-{ids[0]}")
        again = emit_event("order.created", {"order": {"id": 0}}, dedupe_key=f"demo-{ids[0]}")
        self.stdout.write(f"emitted {len(ids)} events in one transaction, and one deduplicated twice ({again})")
        jobs = {j.event_id: j for j in OutboxJob.objects.filter(event_id__in=ids)}
        for ev in Event.objects.filter(pk__in=ids).order_by("created_at"):
            job = jobs[ev.pk]
            self.stdout.write(
                f"  event {ev.pk} {ev.type:<14} payload={ev.payload}  ->  outbox job {job.pk} {job.status} "
                f"attempts={job.attempts}"
            )
        pending = OutboxJob.objects.filter(status=OutboxJob.Status.PENDING).count()
        self.stdout.write(self.style.SUCCESS(f"{pending} outbox jobs pending for automate-aio-worker"))
