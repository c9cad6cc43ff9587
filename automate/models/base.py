"""Immutability for Event, WorkflowVersion and AuditLogEntry.

Two layers refuse an UPDATE: the model (``save()`` of an existing row, ``QuerySet.update()``) and a
database trigger (``automate_refuse_update``, migration 0002), so raw SQL cannot change them either.
DELETE stays allowed: retention needs it.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from automate.core.errors import ImmutableRecordError


class ImmutableQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise ImmutableRecordError(f"{self.model.__name__} rows are immutable; UPDATE refused")

    update.queryset_only = True  # type: ignore[attr-defined]

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        raise ImmutableRecordError(f"{self.model.__name__} rows are immutable; UPDATE refused")


class ImmutableManager(models.Manager):
    def get_queryset(self) -> ImmutableQuerySet:
        return ImmutableQuerySet(self.model, using=self._db)


class ImmutableModel(models.Model):
    """A model whose rows are written once."""

    objects = ImmutableManager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableRecordError(f"{type(self).__name__} rows are immutable; UPDATE refused")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)
