from django.db import models


class Order(models.Model):
    """The demo's own table: the views write to it and emit an event in the same transaction."""

    total = models.DecimalField(max_digits=10, decimal_places=2)
    status = models.CharField(max_length=20, default="new")
    created_at = models.DateTimeField(auto_now_add=True)
