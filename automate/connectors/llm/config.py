"""The ``llm`` step's config: checked when a version is published (templated values are checked once they
are rendered, at run time) and again, whole, before each call.

    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "..."}], "max_tokens": 300,
     "temperature": 0}

``max_tokens`` is required: it bounds the reply, hence the call's cost, which the daily budget reserves.
Message content is text (a string, or a list of ``{"type": "text", "text": ...}`` parts): an image's
token cost has no bound the budget could reserve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["KEYS", "MAX_MAX_TOKENS", "MAX_MESSAGES", "ROLES", "config_problem", "templated"]

KEYS = ("model", "messages", "max_tokens", "temperature", "top_p", "stop", "seed", "response_format", "user")
ROLES = frozenset({"system", "developer", "user", "assistant"})
MAX_MESSAGES = 1_000
MAX_MAX_TOKENS = 1_000_000
_MESSAGE_KEYS = frozenset({"role", "content", "name"})


def templated(value: Any) -> bool:
    """A value only known once rendered (a template; a secret reference counts too)."""
    return isinstance(value, str) and ("{{" in value or "$secret:" in value)


def _never(value: Any) -> bool:
    return False  # a rendered config: text that looks like a template is data, checked like any value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _content_problem(content: Any, path: str, tpl: Callable[[Any], bool]) -> tuple[str, str] | None:
    if isinstance(content, str):
        return None
    if isinstance(content, list):
        for j, part in enumerate(content):
            where = f"{path}[{j}]"
            if tpl(part):
                continue
            if not isinstance(part, Mapping) or part.get("type") != "text":
                return where, 'must be a text part {"type": "text", "text": "..."} (images cannot be budgeted)'
            if not isinstance(part.get("text"), str):
                return f"{where}.text", "must be a string"
        return None
    return path, f"must be a string or a list of text parts, not {type(content).__name__}"


def _messages_problem(messages: Any, path: str, tpl: Callable[[Any], bool]) -> tuple[str, str] | None:
    if not isinstance(messages, list) or not messages:
        return path, "must be a non-empty list of messages ({\"role\": ..., \"content\": ...})"
    if len(messages) > MAX_MESSAGES:
        return path, f"at most {MAX_MESSAGES} messages, got {len(messages)}"
    for i, message in enumerate(messages):
        where = f"{path}[{i}]"
        if tpl(message):
            continue
        if not isinstance(message, Mapping):
            return where, f"must be an object with role and content, not {type(message).__name__}"
        unknown = sorted(set(message) - _MESSAGE_KEYS)
        if unknown:
            return f"{where}.{unknown[0]}", "unknown key (expected role, content, name)"
        role = message.get("role")
        if not tpl(role) and (not isinstance(role, str) or role not in ROLES):
            return f"{where}.role", f"must be one of {', '.join(sorted(ROLES))}"
        if "content" not in message:
            return f"{where}.content", "required"
        content = message["content"]
        if not tpl(content):
            problem = _content_problem(content, f"{where}.content", tpl)
            if problem:
                return problem
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            return f"{where}.name", "must be a string"
    return None


def config_problem(config: Mapping[str, Any], path: str, *, rendered: bool = False) -> tuple[str, str] | None:
    """``(path, problem)`` for the first thing wrong with ``config``, or None. Values are never quoted (a
    rendered config holds event data). Before rendering (``rendered`` false), templated values pass."""
    tpl = _never if rendered else templated
    if not isinstance(config, Mapping):
        return path, "must be an object"
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        return f"{path}.{unknown[0]}", f"unknown key (expected {', '.join(KEYS)})"
    model = config.get("model")
    if not tpl(model) and (not isinstance(model, str) or not model.strip() or len(model) > 200):
        return f"{path}.model", "required: a model name (a non-empty string of at most 200 characters)"
    if "messages" not in config:
        return f"{path}.messages", "required: a non-empty list of messages"
    messages = config["messages"]
    if not tpl(messages):
        problem = _messages_problem(messages, f"{path}.messages", tpl)
        if problem:
            return problem
    if "max_tokens" not in config:
        return f"{path}.max_tokens", "required: it bounds the reply's cost, which the daily budget reserves"
    max_tokens = config["max_tokens"]
    if not tpl(max_tokens) and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_MAX_TOKENS
    ):
        return f"{path}.max_tokens", f"must be an integer from 1 to {MAX_MAX_TOKENS}"
    for key, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        value = config.get(key)
        if value is not None and not tpl(value) and not (_number(value) and low <= value <= high):
            return f"{path}.{key}", f"must be a number from {low} to {high}"
    stop = config.get("stop")
    stop_ok = isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 4 and all(
        isinstance(s, str) for s in stop))
    if stop is not None and not tpl(stop) and not stop_ok:
        return f"{path}.stop", "must be a string or a list of at most 4 strings"
    seed = config.get("seed")
    if seed is not None and not tpl(seed) and (not isinstance(seed, int) or isinstance(seed, bool)):
        return f"{path}.seed", "must be an integer"
    response_format = config.get("response_format")
    if response_format is not None and not tpl(response_format) and not isinstance(response_format, Mapping):
        return f"{path}.response_format", 'must be an object ({"type": "json_object"})'
    user = config.get("user")
    if user is not None and not tpl(user) and not isinstance(user, str):
        return f"{path}.user", "must be a string"
    return None
