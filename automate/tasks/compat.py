"""Django's Tasks API from wherever it lives: ``django.tasks`` (Django 6) first, else the ``django-tasks``
backport (Django 5.2). Every other module imports these names from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type-checked against django.tasks (django-stubs); the backport has the same API
    from django.tasks import TaskContext, TaskResult, TaskResultStatus, task, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import InvalidTask as InvalidTaskError
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued
    from django.utils.json import normalize_json

    SOURCE: str
else:
    try:
        from django.tasks import TaskContext, TaskResult, TaskResultStatus, task, task_backends
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import Task, TaskError
        from django.tasks.exceptions import InvalidTask as InvalidTaskError
        from django.tasks.exceptions import TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued
        from django.utils.json import normalize_json

        SOURCE = "django.tasks"
    except ImportError:  # Django 5.2: the backport
        from django_tasks import TaskContext, TaskResult, TaskResultStatus, task, task_backends
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskError
        from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued
        from django_tasks.utils import normalize_json

        SOURCE = "django_tasks"

__all__ = [
    "SOURCE",
    "TASK_CLASSES",
    "BaseTaskBackend",
    "InvalidTaskError",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task",
    "task_backends",
    "task_enqueued",
]


def _task_classes() -> tuple[type[Any], ...]:
    classes: list[type[Any]] = [Task]
    try:  # on Django 6 a project may still decorate with the backport's @task
        from django_tasks.base import Task as BackportTask

        if BackportTask is not Task:
            classes.append(BackportTask)
    except ImportError:
        pass
    return tuple(classes)


#: What a job's ``func`` must resolve to: a ``@task``-decorated function (a Task instance), never any
#: importable callable.
TASK_CLASSES = _task_classes()
