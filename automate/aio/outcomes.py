"""What a step or run stores when it ends: output and error text that PostgreSQL accepts, without secrets.

A step's output becomes JSONB and its error TEXT. Either can carry what PostgreSQL refuses (a NUL
character, a lone surrogate) or what JSON cannot say (NaN, Infinity), or be too deep or too large. Such a
value must fail its own step with a clear error *before* it joins a group commit, never fail the commit
of every other job (the recorder still isolates whatever slips through: ``Recorder._isolate``).
"""

from __future__ import annotations

from typing import Any

import orjson

from automate.connectors import PermanentStepError
from automate.core.jsonsafe import JSONValueError, check_json
from automate.core.redaction import Redactor

__all__ = ["MAX_ERROR_CHARS", "MAX_OUTPUT_DEPTH", "check_output", "error_text", "storable_text"]

MAX_ERROR_CHARS = 2_000
MAX_OUTPUT_DEPTH = 100


def storable_text(text: str) -> str:
    """``text`` as PostgreSQL TEXT accepts it: NUL and lone surrogates become visible escapes."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def error_text(exc: BaseException, redactor: Redactor, *, prefix: str = "") -> str:
    """``"<Type>: <message>"``, redacted (the run's secret values too), storable, bounded."""
    try:
        text = str(exc)
    except Exception:  # a user exception whose __str__ raises still gets a message
        text = ""
    text = text or ("timed out" if isinstance(exc, TimeoutError) else "(no message)")
    message = storable_text(f"{prefix}{type(exc).__name__}: {text}")
    return storable_text(redactor.redact_str(message))[:MAX_ERROR_CHARS]


def check_output(output: Any, max_bytes: int) -> None:
    """Raise ``PermanentStepError`` naming the path when ``output`` cannot be stored as JSONB."""
    if output is None or isinstance(output, bool | int):
        return
    try:
        check_json(output, path="output", max_depth=MAX_OUTPUT_DEPTH)
    except JSONValueError as exc:
        raise PermanentStepError(f"the step's output cannot be stored: {exc}") from None
    if isinstance(output, float):
        return
    try:
        size = len(orjson.dumps(output))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise PermanentStepError(f"the step's output is not JSON-serialisable: {exc}") from None
    if size > max_bytes:
        raise PermanentStepError(
            f"the step's output is {size} bytes of JSON, over DJANGO_AUTOMATE.EXECUTION.max_output_bytes "
            f"({max_bytes})"
        )
