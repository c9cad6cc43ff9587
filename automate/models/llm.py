"""The LLM daily budget (``POLICY.llm_budget_daily``): one spend row per UTC day, and the reservations of
the calls in flight. Written only with the named statements of ``automate.queries`` (see
``automate.connectors.llm.budget``), each one atomic under concurrency."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class LlmSpend(models.Model):
    """USD spent (settled) and reserved (calls in flight) on one UTC day."""

    day = models.DateField(primary_key=True)
    spent = models.DecimalField(max_digits=12, decimal_places=6, db_default=0)
    reserved = models.DecimalField(max_digits=12, decimal_places=6, db_default=0)

    class Meta:
        db_table = "automate_llm_spend"
        verbose_name = "LLM spend"
        verbose_name_plural = "LLM spend"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(spent__gte=0, reserved__gte=0), name="automate_llm_spend_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day}: spent {self.spent} USD, reserved {self.reserved} USD"


class LlmReservation(models.Model):
    """An upper bound of one call's cost, held in ``LlmSpend.reserved`` until the call is settled or
    released. ``job_id``/``claim_token`` name the job that held it when it was made: a reservation past
    ``expires_at`` whose job is no longer CLAIMED under that token belongs to a dead worker and is released
    by the next reservation (``SWEEP_LLM_RESERVATIONS``)."""

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    amount = models.DecimalField(max_digits=12, decimal_places=6)
    # No foreign key: retention may delete the job, and the sweep then treats the reservation as orphaned.
    job_id = models.BigIntegerField(null=True, blank=True)
    claim_token = models.BigIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        db_table = "automate_llm_reservation"
        verbose_name = "LLM reservation"
        indexes = [models.Index(fields=["expires_at"], name="automate_llm_res_expires")]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="automate_llm_res_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return f"reservation {self.id}: {self.amount} USD on {self.day}"
