"""``manage.py automate_worker``: the ``automate-aio-worker`` engine, with the same options, run from the
project's ``manage.py``. ``DJANGO_AUTOMATE["WORKER_MODE"]`` says where sync user code runs: ``"thread"``
(a thread pool) or ``"process"`` (a process pool, ``automate.connectors.builtin``); both sized by
``EXECUTION.sync_threads``. Under ``"synchronous"`` the emitting process runs its own jobs; a worker
started anyway runs what is left (parked delays and retries) with sync code in threads."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

_SKIP = {"help", "settings"}  # Django's own --settings selects the settings


def _worker_actions() -> list[argparse.Action]:
    from automate.aio.cli import _parser

    return [a for a in _parser()._actions if a.dest not in _SKIP]


class Command(BaseCommand):
    help = "Run a django-automate worker (the automate-aio-worker engine, same options)."

    def add_arguments(self, parser: Any) -> None:
        for action in _worker_actions():  # copied from the CLI, so the two never drift apart
            kwargs: dict[str, Any] = {"dest": action.dest, "help": action.help, "default": action.default}
            if isinstance(action, argparse._StoreTrueAction):
                kwargs["action"] = "store_true"
            else:
                kwargs.update(type=action.type, metavar=action.metavar, choices=action.choices)
            parser.add_argument(*action.option_strings, **kwargs)

    def handle(self, *args: Any, **options: Any) -> None:
        from automate.aio import cli
        from automate.connectors.builtin import shutdown_process_pool

        argv: list[str] = []
        for action in _worker_actions():
            value = options.get(action.dest)
            if isinstance(action, argparse._StoreTrueAction):
                if value:
                    argv.append(action.option_strings[0])
            elif value is not None and value != action.default:
                argv += [action.option_strings[0], str(value)]
        sys.stdout.flush()
        try:
            code = cli.main(argv)
        finally:
            shutdown_process_pool()  # WORKER_MODE "process": its children end with the worker
        if code:
            raise CommandError(f"automate_worker exited with status {code}", returncode=code)
