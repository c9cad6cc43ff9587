"""Render step configs against a run's context: ``{{ dotted.path }}``, ``{"$expr": rule}`` and secrets.

The grammar is deliberately tiny; nothing here evaluates code (no ``eval``, no Jinja, no attribute access):

- ``{{ event.payload.order.id }}``: a dotted path looked up in the context through dict keys and
  list indexes (a segment of digits indexes a list). Whitespace inside the braces is optional. A segment
  is any run of characters other than whitespace, ``.``, ``{`` and ``}``.
- A string that is exactly one template (nothing around the braces) is replaced by the value itself and
  keeps its type (number, object, list, ``null``...). Templates inside a longer string are interpolated:
  strings as is, ``null`` as ``""``, booleans as ``true``/``false``, numbers as JSON writes them,
  objects and lists as compact JSON.
- ``{"$expr": <JSONLogic rule>}`` (a dict whose only key is ``$expr``) is replaced by
  ``rules.apply(rule, context)``. Strings inside the rule are not templated, so ``{"$expr": "{{ x }}"}``
  is the way to write a literal ``{{``.
- ``$secret:NAME`` tokens (``NAME`` is ``[A-Za-z_][A-Za-z0-9_]*``), the whole string or inside a longer
  one, are resolved last, after every template rendered, and only when ``resolve_secret`` is given;
  without it they are left as written, so validation and dry runs never touch a secret. Only tokens
  written literally in the config are resolved: text that comes from the context (an event payload, a
  step output, an ``$expr`` result) is never scanned again, so an untrusted payload cannot name a secret
  or inject a template.
- Dict keys are never templated. Tuples come back as lists.

Limits against hostile configs or payloads: structures nested deeper than :data:`MAX_DEPTH` and renders
producing more than :data:`MAX_OUTPUT_SIZE` characters (counted over everything templates and
expressions insert) raise :class:`TemplateError`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, NamedTuple

from automate.core import rules
from automate.core.errors import RuleError, TemplateError

__all__ = [
    "MAX_DEPTH",
    "MAX_OUTPUT_SIZE",
    "Reference",
    "TemplateSyntaxError",
    "find_references",
    "format_location",
    "referenced_paths",
    "referenced_secrets",
    "render",
]

MAX_DEPTH = 64
MAX_OUTPUT_SIZE = 8 * 1024 * 1024

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PATH = re.compile(r"[^\s.{}]+(?:\.[^\s.{}]+)*")
_SECRET = re.compile(r"\$secret:([A-Za-z_][A-Za-z0-9_]*)")
# Keys written bare in a location (``.url``, ``.==``, ``.$expr``); others are quoted (``["a b"]``).
_SIMPLE_KEY = re.compile(r"[^\s.\[\]\"'\\]+")
_EXPR = "$expr"
_EXPR_ALONE = "'$expr' must be the only key of its object"
# JSONLogic operators whose later arguments run against each item, not against the context.
_SCOPED_OPS = frozenset({"map", "filter", "all", "none", "some", "reduce"})

Loc = tuple[str | int, ...]


def format_location(loc: Loc, root: str = "") -> str:
    """``("steps", 2, "config", "url")`` -> ``steps[2].config.url``.

    Keys with whitespace, dots, brackets, quotes or backslashes (or empty) are written ``["a b"]``.
    """
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


# --- parsing -------------------------------------------------------------------------------------


class _Path(NamedTuple):
    text: str
    segments: tuple[str, ...]


class _Secret(NamedTuple):
    name: str


_Part = str | _Path | _Secret


@functools.lru_cache(maxsize=2048)
def _parse(text: str) -> tuple[_Part, ...] | str:
    """Split a config string into literal text, template paths and secret tokens.

    Returns an error message (a ``str``) instead of parts when the string is malformed; the caller
    raises it with the step and the location. Cached: the same config strings render on every run.
    """
    parts: list[_Part] = []
    pos = 0
    for match in _TEMPLATE.finditer(text):
        _split_secrets(text[pos : match.start()], parts)
        inner = match.group(1).strip()
        if "{{" in match.group(1) or not _PATH.fullmatch(inner):
            return f"invalid template {_clip(match.group(0))!s} (expected {{{{ dotted.path }}}})"
        parts.append(_Path(inner, tuple(inner.split("."))))
        pos = match.end()
    rest = text[pos:]
    if "{{" in rest:
        return "unclosed '{{' (write a literal '{{' as {\"$expr\": \"...\"})"
    _split_secrets(rest, parts)
    return tuple(parts)


def _split_secrets(literal: str, parts: list[_Part]) -> None:
    pos = 0
    for match in _SECRET.finditer(literal):
        if match.start() > pos:
            parts.append(literal[pos : match.start()])
        parts.append(_Secret(match.group(1)))
        pos = match.end()
    if pos < len(literal):
        parts.append(literal[pos:])


def _clip(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# --- references (save-time validation) -----------------------------------------------------------


class TemplateSyntaxError(TemplateError):
    """A config is malformed whatever the context (bad template, misplaced ``$expr``, too deep).

    ``reason`` is the message without location; ``loc`` is where, relative to the config's root.
    """

    def __init__(self, reason: str, loc: Loc) -> None:
        super().__init__(f"{reason} at {format_location(loc, '$')}")
        self.reason = reason
        self.loc = loc


class Reference(NamedTuple):
    """Something a config refers to, and where (``loc`` is relative to the config's root).

    ``kind`` is ``"path"`` (a template path, or a ``var`` read from the context inside an ``$expr``),
    ``"secret"`` (a literal ``$secret:NAME`` token; ``value`` is ``NAME``) or ``"expr"`` (an ``$expr``
    rule; ``value`` is the rule, for :func:`automate.core.rules.validate`).
    """

    kind: Literal["path", "secret", "expr"]
    value: Any
    loc: Loc


def find_references(config: Any) -> Iterator[Reference]:
    """Yield every template path, secret token and ``$expr`` rule in ``config``, in document order.

    Raises :class:`TemplateSyntaxError` for a malformed template, an ``$expr`` that is not the only key
    of its object, or a structure deeper than ``MAX_DEPTH``.
    """
    yield from _references(config, (), 0)


def _references(value: Any, loc: Loc, depth: int) -> Iterator[Reference]:
    if depth > MAX_DEPTH:
        raise TemplateSyntaxError(f"nested deeper than {MAX_DEPTH} levels", loc)
    if isinstance(value, str):
        parsed = _parse(value)
        if isinstance(parsed, str):
            raise TemplateSyntaxError(parsed, loc)
        for part in parsed:
            if isinstance(part, _Path):
                yield Reference("path", part.text, loc)
            elif isinstance(part, _Secret):
                yield Reference("secret", part.name, loc)
    elif isinstance(value, Mapping):
        if _EXPR in value:
            if len(value) != 1:
                raise TemplateSyntaxError(_EXPR_ALONE, loc)
            rule = value[_EXPR]
            yield Reference("expr", rule, (*loc, _EXPR))
            for path in _rule_vars(rule, 0):
                yield Reference("path", path, (*loc, _EXPR))
            return
        for key, item in value.items():
            yield from _references(item, (*loc, str(key)), depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _references(item, (*loc, index), depth + 1)


def _rule_vars(rule: Any, depth: int) -> Iterator[str]:
    """Literal ``var`` paths a rule reads from the context (not those scoped to a map/filter item)."""
    if depth > MAX_DEPTH:
        return
    if isinstance(rule, list | tuple):
        for item in rule:
            yield from _rule_vars(item, depth + 1)
    elif isinstance(rule, Mapping) and len(rule) == 1:
        ((op, args),) = rule.items()
        if op == "var":
            name = args[0] if isinstance(args, list | tuple) and args else args
            if isinstance(name, str) and name:
                yield name
            elif isinstance(name, int) and not isinstance(name, bool):
                yield str(name)
            return
        if op in _SCOPED_OPS and isinstance(args, list | tuple):
            # The first argument (and reduce's initial value) reads the context; the rest reads items.
            scoped = [*args[:1], *args[2:]] if op == "reduce" else [*args[:1]]
            yield from _rule_vars(scoped, depth + 1)
            return
        yield from _rule_vars(args, depth + 1)


def referenced_secrets(config: Any) -> set[str]:
    """Names of the ``$secret:NAME`` tokens written in ``config`` (the ones :func:`render` resolves)."""
    return {ref.value for ref in find_references(config) if ref.kind == "secret"}


def referenced_paths(config: Any) -> set[str]:
    """Dotted context paths ``config`` reads: template paths and literal ``var`` paths of ``$expr`` rules."""
    return {ref.value for ref in find_references(config) if ref.kind == "path"}


# --- rendering -----------------------------------------------------------------------------------


class _Pending:
    """A rendered string still waiting for its secrets (phase two of :func:`render`)."""

    __slots__ = ("loc", "parts")

    def __init__(self, parts: list[str | _Secret], loc: Loc) -> None:
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
        if isinstance(value, str):
            return self.string(value, loc)
        if isinstance(value, Mapping):
            if _EXPR in value:
                if len(value) != 1:
                    raise self.fail(_EXPR_ALONE, loc)
                return self.expr(value[_EXPR], loc, depth)
            out: dict[Any, Any] = {}
            for key, item in value.items():
                out[key] = self.store(out, key, self.value(item, (*loc, str(key)), depth + 1))
            return out
        if isinstance(value, list | tuple):
            items: list[Any] = []
            for index, item in enumerate(value):
                items.append(self.store(items, index, self.value(item, (*loc, index), depth + 1)))
            return items
        return value

    def store(self, container: Any, key: Any, rendered: Any) -> Any:
        if isinstance(rendered, _Pending):
            self.pending.append((container, key, rendered))
        return rendered

    def string(self, text: str, loc: Loc) -> Any:
        parsed = _parse(text)
        if isinstance(parsed, str):
            raise self.fail(parsed, loc)
        if len(parsed) == 1 and isinstance(parsed[0], _Path):
            return self.copy(self.lookup(parsed[0], loc), loc, len(loc))
        if not any(isinstance(part, _Path | _Secret) for part in parsed):
            return text
        out: list[str | _Secret] = []
        for part in parsed:
            if isinstance(part, _Path):
                found = self.lookup(part, loc)
                # copy() charges the size and bounds the depth before json.dumps sees the value.
                out.append(_to_text(self.copy(found, loc, len(loc))))
            elif isinstance(part, _Secret) and not self.with_secrets:
                out.append(f"$secret:{part.name}")
            else:
                out.append(part)
        if any(isinstance(part, _Secret) for part in out):
            return _Pending(out, loc)
        return "".join(out)  # type: ignore[arg-type]  # no _Secret left

    def expr(self, rule: Any, loc: Loc, depth: int) -> Any:
        try:
            result = rules.apply(rule, self.context)
        except RuleError as exc:
            raise self.fail(f"{_EXPR} failed: {exc}", loc) from None
        return self.copy(result, loc, depth)

    def lookup(self, path: _Path, loc: Loc) -> Any:
        current: Any = self.context
        for segment in path.segments:
            if isinstance(current, Mapping):
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

    def _unknown(self, path: _Path, why: str, loc: Loc) -> TemplateError:
        return self.fail(f"unknown template path {path.text!r} ({why})", loc)

    def copy(self, value: Any, loc: Loc, depth: int) -> Any:
        """Copy a context value into the output, charging its size and bounding its depth."""
        if depth > MAX_DEPTH:
            raise self.fail(f"value nested deeper than {MAX_DEPTH} levels", loc)
        if isinstance(value, str):
            self.charge(len(value), loc)
            return value
        if isinstance(value, Mapping):
            self.charge(2, loc)
            out = {}
            for key, item in value.items():
                self.charge(len(key) + 3 if isinstance(key, str) else 8, loc)
                out[key] = self.copy(item, loc, depth + 1)
            return out
        if isinstance(value, list | tuple):
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
                secret(part.name, pending.loc) if isinstance(part, _Secret) else part for part in pending.parts
            )

        for container, key, pending in self.pending:
            container[key] = text(pending)
        return text(root) if isinstance(root, _Pending) else root


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
