"""What the closure builders (build_compare, build_logic, build_data) share."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automate.core.rules.compiler import CompileContext, Fn

__all__ = ["PRIMITIVES", "Builder", "is_literal", "is_number"]

Builder = Callable[[list[Any], list[str], str, "CompileContext"], "Fn"]
PRIMITIVES = (type(None), bool, int, float, str)


def is_literal(value: Any) -> bool:
    return type(value) in PRIMITIVES


def is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float
