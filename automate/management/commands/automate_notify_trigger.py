"""``manage.py automate_notify_trigger --install | --remove | --status``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from automate import queries


class Command(BaseCommand):
    help = (
        "Install (or remove) a database trigger that sends NOTIFY automate_outbox for every INSERT into the "
        "outbox, so rows inserted by other services or raw SQL wake the workers at once. Costs throughput: "
        "the NOTIFY runs inside each inserting transaction. Set DJANGO_AUTOMATE['EVENTS']['notify'] = "
        "'trigger' with it, so emit_event() does not notify a second time."
    )

    def add_arguments(self, parser: Any) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--install", action="store_true")
        group.add_argument("--remove", action="store_true")
        group.add_argument("--status", action="store_true")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        if using not in connections:
            raise CommandError(f"unknown database alias {using!r}")
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            if options["install"]:
                cursor.execute(queries.INSTALL_NOTIFY_TRIGGER)
            elif options["remove"]:
                cursor.execute(queries.REMOVE_NOTIFY_TRIGGER)
            cursor.execute(queries.NOTIFY_TRIGGER_INSTALLED)
            installed = bool(cursor.fetchone()[0])
        self.stdout.write(f"automate_outbox_notify trigger: {'installed' if installed else 'not installed'}")
