"""Read-only admins for the app's other models (the LLM budget's spend and reservations): written by
the runtime's own statements, so the admin shows them and changes nothing. Registered for every model of
the app that no other module registered, so a model added later is never missing from the admin."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin

from .base import ReadOnlyAdmin

__all__ = ["register_remaining"]


def register_remaining(site: admin.AdminSite = admin.site) -> list[str]:
    done = []
    for model in apps.get_app_config("automate").get_models():
        if site.is_registered(model):
            continue
        fields = [f.name for f in model._meta.fields]
        attrs: dict[str, Any] = {"list_display": fields[:8], "readonly_fields": fields}
        site.register(model, type(f"{model.__name__}Admin", (ReadOnlyAdmin,), attrs))
        done.append(model.__name__)
    return done
