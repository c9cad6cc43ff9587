"""Is this value storable as PostgreSQL JSONB? One check for every place user data becomes JSONB.

JSON has no NaN or Infinity, and orjson (the encoder used everywhere here) silently writes them as
``null``; PostgreSQL's jsonb refuses ``\\u0000``; a lone surrogate cannot be encoded as UTF-8; object keys
must be strings; nesting must stay bounded. ``check_json`` raises ``JSONValueError`` at the first such
value it meets, naming its path (``payload.items[2].price``), so the caller refuses the value instead of
storing something else.

Accepted is what ``orjson.dumps`` encodes faithfully: ``dict`` (keys of type ``str``), ``list``,
``tuple``, ``str``, ``int`` (64-bit), finite ``float``, ``bool``, ``None``, subclasses of ``dict``,
``list``, ``str`` and ``int``; ``datetime``/``date``/``time``/``UUID`` (encoded as strings);
``orjson.Fragment``; dataclasses and enums (checked by their fields / value). Anything else is refused,
since the encoder would refuse it too.

The walk is iterative (no recursion limit) and stays on a fast path for the plain JSON types. Measured
on an 860-byte order payload (57 values): about 6 us, against 0.7 us for ``orjson.dumps`` of the same
payload and 9 us for ``json.dumps(allow_nan=False)``; an emit_event commit takes 100 us or more.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import re
import uuid
from typing import Any

import orjson

from automate.core.errors import AutomateError

__all__ = ["DEFAULT_MAX_DEPTH", "JSONValueError", "check_json"]

# Containers nested deeper than this are refused: orjson stops at 255 levels, and no payload needs 100.
DEFAULT_MAX_DEPTH = 100

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1  # orjson encodes int64 and uint64
_LEAVES = (datetime.datetime, datetime.date, datetime.time, uuid.UUID, orjson.Fragment)
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_KEY_CHARS = 60

# A trail is the way from the root to a node, as linked pairs (parent trail, key or index); the path
# text is only built when a check fails.
_Trail = tuple[Any, "str | int"] | None


class JSONValueError(AutomateError, ValueError):
    """A value cannot be stored as JSONB. ``path`` names the first offending value (``payload.v``),
    ``problem`` says what is wrong with it; ``str(exc)`` is ``"<path>: <problem>"``. The message never
    contains the offending value itself (it may be a secret)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def check_json(value: Any, *, path: str = "payload", max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Return if ``value`` can be stored as JSONB as it is; else raise ``JSONValueError``.

    ``path`` names ``value`` itself in the message; ``max_depth`` is the deepest container nesting
    allowed (``{"a": [1]}`` is 2 deep; a scalar is 0).
    """
    isfinite = math.isfinite
    # (node, trail, depth of the node): only containers are pushed. Dicts and lists have a loop each,
    # with the exact-type tests for the common scalars inline; anything else goes the slow way.
    stack: list[tuple[Any, _Trail, int]] = [(value, None, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        node, trail, depth = pop()
        kind = type(node)
        if kind is not dict and kind is not list and kind is not tuple:
            node = _container_or_leaf(node, path, trail)  # subclasses, dataclasses, enums, scalars
            if node is None:
                continue
            kind = type(node)
        depth += 1
        if depth > max_depth:
            raise JSONValueError(_path(path, trail), f"nested deeper than {max_depth} levels")
        if kind is dict:
            for key, item in node.items():
                if type(key) is not str or "\x00" in key or not key.isascii():
                    _check_key(key, path, trail)
                t = type(item)
                if t is str:
                    if "\x00" in item or (not item.isascii() and _has_surrogate(item)):
                        _fail_str(item, path, (trail, key))
                elif t is int:
                    if not _INT_MIN <= item <= _INT_MAX:
                        raise JSONValueError(_path(path, (trail, key)), "integer outside the 64-bit range")
                elif t is float:
                    if not isfinite(item):
                        raise JSONValueError(_path(path, (trail, key)), _non_finite(item))
                elif t is not bool and item is not None:
                    push((item, (trail, key), depth))
        else:
            for index, item in enumerate(node):
                t = type(item)
                if t is str:
                    if "\x00" in item or (not item.isascii() and _has_surrogate(item)):
                        _fail_str(item, path, (trail, index))
                elif t is int:
                    if not _INT_MIN <= item <= _INT_MAX:
                        raise JSONValueError(_path(path, (trail, index)), "integer outside the 64-bit range")
                elif t is float:
                    if not isfinite(item):
                        raise JSONValueError(_path(path, (trail, index)), _non_finite(item))
                elif t is not bool and item is not None:
                    push((item, (trail, index), depth))


def _container_or_leaf(node: Any, root: str, trail: _Trail) -> Any:
    """The slow path for a node of any other type: ``None`` if it is a valid leaf, the dict or list to
    walk if it is a container, ``JSONValueError`` if it cannot be stored. Follows what orjson encodes."""
    if node is None or isinstance(node, bool):
        return None
    if isinstance(node, str):
        if "\x00" in node or (not node.isascii() and _has_surrogate(node)):
            _fail_str(node, root, trail)
        return None
    if isinstance(node, int):
        if not _INT_MIN <= node <= _INT_MAX:
            raise JSONValueError(_path(root, trail), "integer outside the 64-bit range")
        return None
    if type(node) is float:
        if not math.isfinite(node):
            raise JSONValueError(_path(root, trail), _non_finite(node))
        return None
    if isinstance(node, dict):
        return dict(node)
    if isinstance(node, list):
        return list(node)
    if type(node) is tuple:
        return node
    if isinstance(node, _LEAVES):
        return None  # encoded as ISO strings / inserted as given
    if isinstance(node, enum.Enum):
        return _container_or_leaf(node.value, root, trail)  # encoded as its value
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
    raise JSONValueError(_path(root, trail), f"a value of type {type(node).__name__} is not JSON-serialisable")


def _check_key(key: Any, root: str, trail: _Trail) -> None:
    if type(key) is not str:  # orjson refuses str subclasses as keys too
        raise JSONValueError(_path(root, trail), f"object keys must be strings, not {type(key).__name__}")
    if "\x00" in key:
        raise JSONValueError(
            _path(root, (trail, key)), "the key contains a NUL character (\\u0000), which JSONB cannot store"
        )
    if _has_surrogate(key):
        raise JSONValueError(
            _path(root, (trail, key)), "the key contains a lone surrogate, which is not valid UTF-8"
        )


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _fail_str(text: str, root: str, trail: _Trail) -> None:
    if "\x00" in text:
        raise JSONValueError(_path(root, trail), "contains a NUL character (\\u0000), which JSONB cannot store")
    raise JSONValueError(_path(root, trail), "contains a lone surrogate, which is not valid UTF-8")


def _non_finite(x: float) -> str:
    name = "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")
    return f"{name} is not a JSON number (JSON has no NaN or Infinity)"


def _path(root: str, trail: _Trail) -> str:
    parts: list[str | int] = []
    while trail is not None:
        trail, part = trail
        parts.append(part)
    out = root
    for part in reversed(parts):
        if type(part) is int:
            out += f"[{part}]"
        elif _SIMPLE_KEY.fullmatch(part := str(part)):
            out += f".{part}" if out else part
        else:
            text = part if len(part) <= _KEY_CHARS else part[:_KEY_CHARS] + "..."
            out += f"[{json.dumps(text)}]"  # ASCII-escaped: a NUL or surrogate never reaches the message
    return out
