from __future__ import annotations

import uuid

from django.db import models
from django.db.models.functions import Now

from .base import ImmutableModel


class Event(ImmutableModel):
    """Immutable log of inputs. One row per emitted event."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=200)
    payload = models.JSONField(default=dict)
    source = models.CharField(max_length=200, blank=True, db_default="")
    dedupe_key = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    # W3C trace context of the emitter (https://www.w3.org/TR/trace-context/).
    traceparent = models.CharField(max_length=55, blank=True, db_default="")
    tracestate = models.CharField(max_length=512, blank=True, db_default="")

    class Meta:
        db_table = "automate_event"
        # Plain btree indexes declared here: db_index=True on a CharField would add a second
        # varchar_pattern_ops index that every insert pays for.
        indexes = [models.Index(fields=["type"], name="automate_event_type")]
        constraints = [
            models.UniqueConstraint(
                fields=["dedupe_key"],
                condition=models.Q(dedupe_key__isnull=False),
                name="automate_event_dedupe_key_uniq",
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"
