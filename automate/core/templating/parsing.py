"""Everything a config says without a context: its strings split into literal text, ``{{ dotted.path }}``
templates and ``$secret:NAME`` tokens; what it refers to (template paths, secret names, ``$expr`` rules and
the context paths they read), for save-time validation; and how a location in it is written
(``$.headers["X-Key"]``). A malformed string is malformed whatever the run.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal, NamedTuple

from automate.core.errors import TemplateError

__all__ = [
    "EXPR",
    "EXPR_ALONE",
    "MAX_DEPTH",
    "Loc",
    "Part",
    "PathPart",
    "Reference",
    "SecretPart",
    "TemplateSyntaxError",
    "find_references",
    "format_location",
    "parse",
    "referenced_paths",
    "referenced_secrets",
]

MAX_DEPTH = 64

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PATH = re.compile(r"[^\s.{}]+(?:\.[^\s.{}]+)*")
_SECRET = re.compile(r"\$secret:([A-Za-z_][A-Za-z0-9_]*)")
# Keys written bare in a location (``.url``, ``.==``, ``.$expr``); others are quoted (``["a b"]``).
_SIMPLE_KEY = re.compile(r"[^\s.\[\]\"'\\]+")
EXPR = "$expr"
EXPR_ALONE = "'$expr' must be the only key of its object"
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


class PathPart(NamedTuple):
    text: str
    segments: tuple[str, ...]


class SecretPart(NamedTuple):
    name: str


Part = str | PathPart | SecretPart


@functools.lru_cache(maxsize=2048)
def parse(text: str) -> tuple[Part, ...] | str:
    """Split a config string into literal text, template paths and secret tokens.

    Returns an error message (a ``str``) instead of parts when the string is malformed; the caller
    raises it with the step and the location. Cached: the same config strings render on every run.
    """
    parts: list[Part] = []
    pos = 0
    for match in _TEMPLATE.finditer(text):
        _split_secrets(text[pos : match.start()], parts)
        inner = match.group(1).strip()
        if "{{" in match.group(1) or not _PATH.fullmatch(inner):
            return f"invalid template {_clip(match.group(0))!s} (expected {{{{ dotted.path }}}})"
        parts.append(PathPart(inner, tuple(inner.split("."))))
        pos = match.end()
    rest = text[pos:]
    if "{{" in rest:
        return "unclosed '{{' (write a literal '{{' as {\"$expr\": \"...\"})"
    _split_secrets(rest, parts)
    return tuple(parts)


def _split_secrets(literal: str, parts: list[Part]) -> None:
    pos = 0
    for match in _SECRET.finditer(literal):
        if match.start() > pos:
            parts.append(literal[pos : match.start()])
        parts.append(SecretPart(match.group(1)))
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
        parsed = parse(value)
        if isinstance(parsed, str):
            raise TemplateSyntaxError(parsed, loc)
        for part in parsed:
            if isinstance(part, PathPart):
                yield Reference("path", part.text, loc)
            elif isinstance(part, SecretPart):
                yield Reference("secret", part.name, loc)
    elif isinstance(value, Mapping):
        if EXPR in value:
            if len(value) != 1:
                raise TemplateSyntaxError(EXPR_ALONE, loc)
            rule = value[EXPR]
            yield Reference("expr", rule, (*loc, EXPR))
            for path in _rule_vars(rule, 0):
                yield Reference("path", path, (*loc, EXPR))
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
    """Names of the ``$secret:NAME`` tokens written in ``config`` (the ones
    :func:`~automate.core.templating.render` resolves)."""
    return {ref.value for ref in find_references(config) if ref.kind == "secret"}


def referenced_paths(config: Any) -> set[str]:
    """Dotted context paths ``config`` reads: template paths and literal ``var`` paths of ``$expr`` rules."""
    return {ref.value for ref in find_references(config) if ref.kind == "path"}
