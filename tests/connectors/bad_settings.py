"""tests.settings with a CONNECTORS entry that cannot be imported: the worker must refuse to start."""

from tests.settings import *  # noqa: F403

DJANGO_AUTOMATE = {**DJANGO_AUTOMATE, "CONNECTORS": ["tests.connectors.nowhere.Missing"]}  # noqa: F405
