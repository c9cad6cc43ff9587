"""``manage.py check`` reports the same settings errors as ``get_settings()`` raises, and a connector
from ``CONNECTORS`` or an entry point that cannot be loaded."""

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


@checks.register(checks.Tags.compatibility)
def check_connectors(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from .connectors.registry import load_connectors

    try:
        paths = validate_settings(getattr(settings, SETTINGS_NAME, None)).CONNECTORS
    except ImproperlyConfigured:
        return []  # reported by check_settings (automate.E001)
    try:
        load_connectors(paths)
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc), hint="See 'Writing your own connector' in the README.", id="automate.E002"
            )
        ]
    return []
