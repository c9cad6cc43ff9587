"""Step types. Each implements ``Connector``; the registry maps a step's ``type`` to one."""

from .base import Connector, PermanentStepError, StepContext, TransientStepError, Wait, classify_failure
from .builtin import PythonConnector, TransformConnector
from .email import EmailConnector
from .flow import ConditionConnector, DelayConnector
from .http import HttpConnector, SlackConnector
from .llm import LlmConnector
from .registry import clear_loaded, get_connector, load_connectors, register, registered_codes

register(PythonConnector())
register(TransformConnector())
register(ConditionConnector())
register(DelayConnector())
register(EmailConnector())
register(LlmConnector())
register(HttpConnector())
register(SlackConnector())

__all__ = [
    "Connector",
    "PermanentStepError",
    "StepContext",
    "TransientStepError",
    "Wait",
    "classify_failure",
    "clear_loaded",
    "get_connector",
    "load_connectors",
    "register",
    "registered_codes",
]
