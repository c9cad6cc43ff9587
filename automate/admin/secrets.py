"""Secrets of the ``db`` backend: names only; a value is written, never read back."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from automate.models import Secret

from .forms import SecretForm
from .operations import actor_of

__all__ = ["SecretAdmin"]


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    """The ciphertext is never shown either; saving stores the new value with ``set_secret`` (audited as
    ``secret.created``/``secret.updated``), deleting goes through ``delete_secret`` (``secret.deleted``)."""

    form = SecretForm
    list_display = ["name", "created_at", "updated_at"]
    search_fields = ["name"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["name", "value"]

    def save_model(self, request: HttpRequest, obj: Secret, form: Any, change: bool) -> None:
        from automate.secrets import set_secret

        set_secret(form.cleaned_data["name"], form.cleaned_data["value"], actor=actor_of(request.user))
        stored = Secret.objects.filter(name=form.cleaned_data["name"]).first()
        if stored is not None:
            obj.pk, obj.ciphertext = stored.pk, stored.ciphertext
            obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Secret) -> None:
        from automate.secrets import delete_secret

        delete_secret(obj.name, actor=actor_of(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            self.delete_model(request, obj)
