"""Django Tasks on the outbox: ``TASKS = {"default": {"BACKEND": "automate.tasks.AutomateTaskBackend"}}``.

``automate.tasks.task`` is Django's ``@task`` (``django.tasks`` on Django 6, the ``django-tasks`` backport
on 5.2). See :mod:`automate.tasks.backend`; the worker side is :mod:`automate.aio.tasks`.
"""

from .backend import AutomateTaskBackend, TaskJobFailed, load_task
from .compat import task

__all__ = ["AutomateTaskBackend", "TaskJobFailed", "load_task", "task"]
