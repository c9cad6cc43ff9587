"""``manage.py demo``: migrate, publish a demo workflow, emit events, run the real worker, show the runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from automate.models import ExecutionRun, OutboxJob, StepRun
from automate.runtime import emit_event
from automate.workflows import publish

STEPS = [
    {
        "id": "score",
        "type": "python",
        "config": {"callable": "demo.steps.score_order", "kwargs": {"total": "{{ event.payload.order.total }}"}},
    },
    {
        "id": "reserve",
        "type": "python",
        "config": {"callable": "demo.steps.reserve_stock", "kwargs": {"order_id": "{{ event.payload.order.id }}"}},
    },
    {
        "id": "vip_note",
        "type": "transform",
        "depends_on": ["score", "reserve"],
        "when": {"==": [{"var": "steps.score.output.tier"}, "gold"]},
        "config": {"output": "VIP order {{ event.payload.order.id }} ({{ steps.score.output.tier }})"},
    },
]


class Command(BaseCommand):
    help = "Migrate, publish a demo workflow, emit events and let automate-aio-worker run them."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--events", type=int, default=5, help="how many events to emit")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("database migrated")
        version = publish(
            "order-routing",
            name="Order routing",
            trigger_spec={"event": "order.*", "rule": {">": [{"var": "event.payload.order.total"}, 0]}},
            steps=STEPS,
            created_by="demo",
        )
        self.stdout.write(f"published workflow order-routing v{version.version_num}")
        with transaction.atomic():
            ids = [
                emit_event("order.created", {"order": {"id": i, "total": 40 + 30 * i}}, source="demo")
                for i in range(options["events"])
            ]
        self.stdout.write(f"emitted {len(ids)} events in one transaction; starting automate-aio-worker --drain")
        self._run_worker()
        for run in ExecutionRun.objects.filter(event_id__in=ids).select_related("event").order_by("created_at"):
            steps = dict(StepRun.objects.filter(run=run).values_list("step_id", "status"))
            self.stdout.write(
                f"  run {run.id} order {run.event.payload['order']['id']}: {run.status} "
                f"steps={steps} vip_note={run.outputs.get('vip_note')!r}"
            )
        done = ExecutionRun.objects.filter(event_id__in=ids, status="SUCCEEDED").count()
        left = OutboxJob.objects.filter(status__in=["PENDING", "CLAIMED"]).count()
        style = self.style.SUCCESS if done == len(ids) and not left else self.style.ERROR
        self.stdout.write(style(f"{done}/{len(ids)} runs SUCCEEDED; {left} outbox jobs left"))
        if done != len(ids):
            sys.exit(1)

    def _run_worker(self) -> None:
        example_dir = Path(__file__).resolve().parents[3]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(example_dir), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "automate.aio", "--settings", "project.settings", "--drain", "--log-level"]
        subprocess.run(  # the real worker, as a separate process
            [*cmd, "WARNING"],
            env=env,
            check=True,
            timeout=300,
        )
