"""Rendering a step config against a run's context, in two phases: templates and ``$expr`` rules first,
then the ``$secret:NAME`` tokens written literally in the config (never text that came from the context).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from automate.core import rules
from automate.core.errors import RuleError, TemplateError
from automate.core.templating.parsing import (
    EXPR,
    EXPR_ALONE,
    MAX_DEPTH,
    Loc,
    PathPart,
    SecretPart,
    format_location,
    parse,
)

__all__ = ["MAX_OUTPUT_SIZE", "copy_constant", "is_constant", "render"]

MAX_OUTPUT_SIZE = 8 * 1024 * 1024


class _Pending:
    """A rendered string still waiting for its secrets (phase two of :func:`render`)."""

    __slots__ = ("loc", "parts")

    def __init__(self, parts: list[str | SecretPart], loc: Loc) -> None:
        self.parts = parts
        self.loc = loc


class _Renderer:
    def __init__(self, context: Mapping[str, Any], step_id: str | None, with_secrets: bool) -> None:
        self.context = context
        self.prefix = f"step {step_id!r}: " if step_id is not None else ""
        self.with_secrets = with_secrets
        self.budget = MAX_OUTPUT_SIZE
        # (container, key, pending): where phase two writes each resolved string.
        self.pending: list[tuple[Any, Any, _Pending]] = []

    def fail(self, message: str, loc: Loc) -> TemplateError:
        where = f" at {format_location(loc, '$')}" if loc else ""
        return TemplateError(f"{self.prefix}{message}{where}")

    def charge(self, size: int, loc: Loc) -> None:
        self.budget -= size
        if self.budget < 0:
            raise self.fail(f"rendered output exceeds {MAX_OUTPUT_SIZE} characters", loc)

    # Phase one: templates and expressions. Returns the rendered value, or a _Pending for a string
    # with secret tokens; the caller stores it and records where.
    def value(self, value: Any, loc: Loc, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"config nested deeper than {MAX_DEPTH} levels", loc)
        # Exact type checks first: configs are parsed JSON (str, dict, list), and an isinstance() check
        # against the Mapping ABC costs several times more; other mappings and sequences still work.
        kind = type(value)
        if kind is str or isinstance(value, str):
            return self.string(value, loc)
        if kind is dict or (kind is not list and isinstance(value, Mapping)):
            if EXPR in value:
                if len(value) != 1:
                    raise self.fail(EXPR_ALONE, loc)
                return self.expr(value[EXPR], loc, depth)
            out: dict[Any, Any] = {}
            for key, item in value.items():
                out[key] = self.store(out, key, self.value(item, (*loc, str(key)), depth + 1))
            return out
        if kind is list or isinstance(value, list | tuple):
            items: list[Any] = []
            for index, item in enumerate(value):
                items.append(self.store(items, index, self.value(item, (*loc, index), depth + 1)))
            return items
        return value

    def store(self, container: Any, key: Any, rendered: Any) -> Any:
        if type(rendered) is _Pending:
            self.pending.append((container, key, rendered))
        return rendered

    def string(self, text: str, loc: Loc) -> Any:
        parsed, shape = _shape(text)
        if shape is _LITERAL:
            return text
        if shape is _ERROR:
            raise self.fail(parsed, loc)
        if shape is _ALONE:
            return self.copy(self.lookup(parsed[0], loc), loc, len(loc))
        out: list[str | SecretPart] = []
        for part in parsed:
            if isinstance(part, PathPart):
                found = self.lookup(part, loc)
                # copy() charges the size and bounds the depth before json.dumps sees the value.
                out.append(_to_text(self.copy(found, loc, len(loc))))
            elif isinstance(part, SecretPart) and not self.with_secrets:
                out.append(f"$secret:{part.name}")
            else:
                out.append(part)
        if any(isinstance(part, SecretPart) for part in out):
            return _Pending(out, loc)
        return "".join(out)  # type: ignore[arg-type]  # no SecretPart left

    def expr(self, rule: Any, loc: Loc, depth: int) -> Any:
        try:
            result = rules.apply(rule, self.context)
        except RuleError as exc:
            raise self.fail(f"{EXPR} failed: {exc}", loc) from None
        return self.copy(result, loc, depth)

    def lookup(self, path: PathPart, loc: Loc) -> Any:
        current: Any = self.context
        for segment in path.segments:
            if type(current) is dict or isinstance(current, Mapping):
                if segment not in current:
                    raise self._unknown(path, f"no key {segment!r}", loc)
                current = current[segment]
            elif isinstance(current, list | tuple):
                if not segment.isdigit() or not segment.isascii():
                    raise self._unknown(path, f"{segment!r} is not a list index", loc)
                index = int(segment)
                if index >= len(current):
                    raise self._unknown(path, f"index {index} out of range for {len(current)} items", loc)
                current = current[index]
            else:
                raise self._unknown(path, f"cannot look up {segment!r} in {_kind(current)}", loc)
        return current

    def _unknown(self, path: PathPart, why: str, loc: Loc) -> TemplateError:
        return self.fail(f"unknown template path {path.text!r} ({why})", loc)

    def copy(self, value: Any, loc: Loc, depth: int) -> Any:
        """Copy a context value into the output, charging its size and bounding its depth."""
        if depth > MAX_DEPTH:
            raise self.fail(f"value nested deeper than {MAX_DEPTH} levels", loc)
        kind = type(value)
        if kind is str:
            self.charge(len(value), loc)
            return value
        if kind is int or kind is float or kind is bool or value is None:
            self.charge(8, loc)
            return value
        if isinstance(value, str):
            self.charge(len(value), loc)
            return value
        if kind is dict or (kind is not list and isinstance(value, Mapping)):
            self.charge(2, loc)
            out = {}
            for key, item in value.items():
                self.charge(len(key) + 3 if isinstance(key, str) else 8, loc)
                out[key] = self.copy(item, loc, depth + 1)
            return out
        if kind is list or isinstance(value, list | tuple):
            self.charge(2, loc)
            return [self.copy(item, loc, depth + 1) for item in value]
        self.charge(8, loc)
        return value

    # Phase two: secrets, only where phase one left a _Pending (literal config text).
    def resolve(self, root: Any, resolve_secret: Callable[[str], str]) -> Any:
        cache: dict[str, str] = {}

        def secret(name: str, loc: Loc) -> str:
            if name not in cache:
                resolved = resolve_secret(name)
                if not isinstance(resolved, str):
                    raise self.fail(f"secret {name!r} did not resolve to a string", loc)
                cache[name] = resolved
            return cache[name]

        def text(pending: _Pending) -> str:
            return "".join(
                secret(part.name, pending.loc) if isinstance(part, SecretPart) else part for part in pending.parts
            )

        for container, key, pending in self.pending:
            container[key] = text(pending)
        return text(root) if isinstance(root, _Pending) else root


_LITERAL, _ERROR, _ALONE, _MIXED = "literal", "error", "alone", "mixed"


@functools.lru_cache(maxsize=4096)
def _shape(text: str) -> tuple[Any, str]:
    """``parse(text)`` and what it is, once per distinct string: plain text (most config strings), a
    syntax error, one ``{{ path }}`` alone (its value is copied as it is), or a mix to join."""
    parsed = parse(text)
    if isinstance(parsed, str):
        return parsed, _ERROR
    if len(parsed) == 1 and isinstance(parsed[0], PathPart):
        return parsed, _ALONE
    if not any(isinstance(part, PathPart | SecretPart) for part in parsed):
        return parsed, _LITERAL
    return parsed, _MIXED


def is_constant(value: Any) -> bool:
    """Whether ``render`` would return a plain copy of ``value`` whatever the context: JSON data with no
    ``{{ template }}``, ``$secret:`` token or ``$expr`` anywhere, within the depth and size ``render``
    allows. Such a config can be copied (:func:`copy_constant`) instead of rendered on every run."""
    budget = [MAX_OUTPUT_SIZE]

    def walk(item: Any, depth: int) -> bool:
        if depth > MAX_DEPTH:
            return False
        kind = type(item)
        if kind is str:
            budget[0] -= len(item)
            return budget[0] >= 0 and _shape(item)[1] is _LITERAL
        if kind is dict:
            return EXPR not in item and all(type(k) is str and walk(v, depth + 1) for k, v in item.items())
        if kind is list:
            return all(walk(v, depth + 1) for v in item)
        return item is None or kind is bool or kind is int or kind is float

    return walk(value, 0)


def copy_constant(value: Any) -> Any:
    """A copy of a value :func:`is_constant` accepted, as ``render`` would return it (new dicts and lists,
    so a connector that changes its config changes only its own copy)."""
    kind = type(value)
    if kind is dict:
        return {k: copy_constant(v) for k, v in value.items()}
    if kind is list:
        return [copy_constant(v) for v in value]
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _to_text(value: Any) -> str:
    """How a value reads inside a longer string."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool | int | float | dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return str(value)


def render(
    value: Any,
    context: Mapping[str, Any],
    *,
    step_id: str | None = None,
    resolve_secret: Callable[[str], str] | None = None,
) -> Any:
    """Render ``value`` (a step config: dicts, lists, strings, scalars) against ``context``.

    ``context`` is ``{"event": {"id", "type", "payload", ...}, "steps": {id: {"output": ...}},
    "run": {"id": ...}}`` (any mapping works; paths are looked up in it). ``resolve_secret(NAME) -> str``
    resolves ``$secret:NAME`` tokens once every template has rendered; each name is resolved once per
    call, and whatever it raises (e.g. ``SecretNotFound``) propagates. The input is never modified.

    Raises :class:`TemplateError` naming ``step_id`` and the path, e.g.
    ``step 'notify': unknown template path 'event.payload.ordr' (no key 'ordr') at $.text``.
    """
    renderer = _Renderer(context, step_id, with_secrets=resolve_secret is not None)
    rendered = renderer.value(value, (), 0)
    if resolve_secret is None:
        return rendered
    return renderer.resolve(rendered, resolve_secret)
