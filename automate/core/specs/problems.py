"""Located problems: raised inside the spec validators, collected into one :class:`SpecError`.

A :class:`Problem` carries the part of the path below the field that raised it (``.and[1]``, ``[2].id``);
:func:`spec_error` joins it to pydantic's location of that field, so each message names the exact path
(``steps[1].depends_on[0]: unknown step 'x'``) and never echoes a config value.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from automate.core.errors import RuleError, SpecError
from automate.core.templating import format_location

__all__ = ["Problem", "parse_as", "rule_problem", "spec_error", "sub"]

_Model = TypeVar("_Model", bound=BaseModel)


class Problem(ValueError):
    """A validation error located below the field that raised it (``sub`` is ``.and[1]``, ``[2].id``)."""

    def __init__(self, sub: str, reason: str) -> None:
        super().__init__(reason)
        self.sub = sub
        self.reason = reason


def sub(*loc: str | int) -> str:
    text = format_location(loc, "$")
    return text[1:]  # ".a[1]" / "[2].id": ready to append to any path


def rule_problem(exc: RuleError, prefix: str = "") -> Problem:
    path = exc.path
    below = path[1:] if path.startswith("$") else f".{path}"
    return Problem(prefix + below, exc.reason)


_FRIENDLY = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
}


def spec_error(exc: ValidationError, root: str) -> SpecError:
    """One :class:`SpecError` for every problem pydantic found, paths starting with ``root``."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        path = format_location(tuple(err["loc"]), root)
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, Problem):
            path += cause.sub
            message = cause.reason
        elif err["type"] == "value_error" and cause is not None:
            message = str(cause)
        else:
            message = _FRIENDLY.get(err["type"], err["msg"])
        problems.append((path or "$", message))
    error = SpecError("; ".join(f"{path}: {message}" for path, message in problems))
    error.problems = tuple(problems)  # type: ignore[attr-defined]  # for forms: (path, message) pairs
    return error


def parse_as(model: type[_Model], data: Any, root: str) -> _Model:
    """``model.model_validate(data)``, raising one :class:`SpecError` with paths starting with ``root``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise spec_error(exc, root) from None
