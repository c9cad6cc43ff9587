"""Step types. Each implements ``Connector``; the registry maps a step's ``type`` to one."""

from .base import Connector, PermanentStepError, StepContext, TransientStepError, Wait, classify_failure
from .builtin import PythonConnector, TransformConnector
from .flow import ConditionConnector, DelayConnector
from .registry import get_connector, register, registered_codes

register(PythonConnector())
register(TransformConnector())
register(ConditionConnector())
register(DelayConnector())

__all__ = [
    "Connector",
    "PermanentStepError",
    "StepContext",
    "TransientStepError",
    "Wait",
    "classify_failure",
    "get_connector",
    "register",
    "registered_codes",
]
