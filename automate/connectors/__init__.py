"""Step types. Each implements ``Connector``; the registry maps a step's ``type`` to one."""

from .base import Connector, PermanentStepError, StepContext, TransientStepError, classify_failure
from .builtin import PythonConnector, TransformConnector
from .registry import get_connector, register, registered_codes

register(PythonConnector())
register(TransformConnector())

__all__ = [
    "Connector",
    "PermanentStepError",
    "StepContext",
    "TransientStepError",
    "classify_failure",
    "get_connector",
    "register",
    "registered_codes",
]
