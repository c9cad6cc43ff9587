from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class Secret(models.Model):
    """A secret for the ``db`` backend, encrypted at rest (Fernet). The value is never shown."""

    name = models.CharField(max_length=200, unique=True)
    ciphertext = models.TextField()
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "automate_secret"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Secret {self.name!r}>"
