"""``manage.py check`` reports the same settings errors as ``get_settings()`` raises."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .conf import SETTINGS_NAME, validate_settings


@checks.register(checks.Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        validate_settings(getattr(settings, SETTINGS_NAME, None))
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="See the settings table in the README.", id="automate.E001")]
    return []
