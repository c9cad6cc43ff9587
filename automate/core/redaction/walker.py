"""The structure walk: a redacted copy of any JSON-like value, made with a redactor's string and key rules.

The input is never mutated. dicts (and other mappings) become dicts, lists stay lists, tuples stay tuples,
sets/frozensets stay sets/frozensets. ``state`` maps the id of each container to ``_ACTIVE`` while it is
being copied (a reference back to it is a cycle, copied as :data:`CYCLE`) and to its copy once done (a
container shared by two parents is copied once, and shared in the copy too). The first
:data:`RECURSION_DEPTH` levels are copied by recursion (:func:`copy_tree`, fastest), anything deeper by
the iterative :func:`walk` with an explicit stack, so depth is bounded only by memory.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from automate.core.redaction.patterns import REDACTED

if TYPE_CHECKING:
    from automate.core.redaction.redactor import Redactor

__all__ = ["CYCLE", "PASSTHROUGH", "RECURSION_DEPTH", "copy_tree", "walk"]

CYCLE: Final = "[CYCLE]"
#: Scalar types returned as they are, without a look.
PASSTHROUGH: Final = frozenset(
    {int, float, bool, type(None), complex, decimal.Decimal, uuid.UUID, _dt.datetime, _dt.date, _dt.time,
     _dt.timedelta}
)  # fmt: skip
_ACTIVE: Final = object()  # state of a container whose copy is in progress
_PUSHED: Final = object()  # _open pushed a frame
_LEAF, _DICT, _LIST, _TUPLE, _SET, _FROZENSET = range(6)
#: Containers nested deeper than this are copied by the iterative walker instead of by recursion.
RECURSION_DEPTH: Final = 48
_LABELLED: Final = (("name", "value"), ("key", "value"), ("Name", "Value"), ("Key", "Value"))


def _classify(r: Redactor, value: Any) -> tuple[int, Any]:
    """``(kind, None)`` for a container to copy, ``(_LEAF, redacted value)`` for anything else."""
    t = type(value)
    if t is dict:
        return _DICT, None
    if t is list:
        return _LIST, None
    if t is tuple:
        if len(value) == 2 and isinstance(value[0], (str, bytes)):  # a (name, value) pair
            name, sensitive = r._any_key(value[0])
            if sensitive:
                return _LEAF, (name, REDACTED)
        return _TUPLE, None
    if t in PASSTHROUGH:
        return _LEAF, value
    if isinstance(value, str):
        return _LEAF, r.redact_str(str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _LEAF, r.redact_bytes(value)
    if isinstance(value, (int, float, enum.Enum, _dt.date, _dt.time, _dt.timedelta)):
        return _LEAF, value
    if isinstance(value, Mapping):
        return _DICT, None
    if isinstance(value, frozenset):
        return _FROZENSET, None
    if isinstance(value, set):
        return _SET, None
    if isinstance(value, tuple):
        return _TUPLE, None
    if isinstance(value, list):
        return _LIST, None
    try:
        text = str(value)
    except Exception:  # a broken __str__ must not break the log line that carries it
        return _LEAF, f"[UNPRINTABLE {t.__name__}]"
    return _LEAF, r.redact_str(text)


def _forced(r: Redactor, mapping: Mapping[Any, Any]) -> Any:
    """The value key of ``{"name": "DB_PASSWORD", "value": ...}`` when the name is sensitive."""
    if "value" in mapping or "Value" in mapping:
        for label_key, value_key in _LABELLED:
            label = mapping.get(label_key)
            if isinstance(label, str) and value_key in mapping and r._key(label)[1]:
                return value_key
    return None


def copy_tree(r: Redactor, value: Any, state: dict[int, Any], depth: int) -> Any:
    """Recursive copy for the usual, shallow case (``state`` as in the module docstring). Past
    :data:`RECURSION_DEPTH` the subtree goes to the iterative walk (``r._walk``), with the same ``state``."""
    kind, result = _classify(r, value)
    if kind == _LEAF:
        return result
    ident = id(value)
    seen = state.get(ident)
    if seen is _ACTIVE:
        return CYCLE
    if seen is not None:
        return seen
    if depth >= RECURSION_DEPTH:
        return r._walk(value, state)
    state[ident] = _ACTIVE
    rstr = r.redact_str
    passthrough = PASSTHROUGH
    depth += 1
    if kind == _DICT:
        key_cache = r._key_cache
        force = _forced(r, value)
        out: dict[Any, Any] = {}
        for k, v in value.items():
            hit = key_cache.get(k) if type(k) is str else None
            nk, sensitive = hit if hit is not None else r._any_key(k)
            if nk is not k and nk in out:
                nk = _unique(nk, out)
            if sensitive or (force is not None and k == force):
                out[nk] = REDACTED
                continue
            t = type(v)
            if t is str:
                out[nk] = rstr(v)
            elif t in passthrough:
                out[nk] = v
            else:
                out[nk] = copy_tree(r, v, state, depth)
        result = out
    else:
        items: list[Any] = []
        append = items.append
        for v in value:
            t = type(v)
            if t is str:
                append(rstr(v))
            elif t in passthrough:
                append(v)
            else:
                append(copy_tree(r, v, state, depth))
        result = _finish(kind, items)
    state[ident] = result
    return result


def _open(r: Redactor, value: Any, stack: list[list[Any]], state: dict[int, Any]) -> Any:
    """For :func:`walk`: a finished result, or ``_PUSHED`` after pushing a frame for a container."""
    kind, result = _classify(r, value)
    if kind == _LEAF:
        return result
    ident = id(value)
    seen = state.get(ident)
    if seen is _ACTIVE:
        return CYCLE
    if seen is not None:
        return seen
    state[ident] = _ACTIVE
    if kind == _DICT:
        stack.append([_DICT, ident, {}, iter(value.items()), None, _forced(r, value)])
    else:
        stack.append([kind, ident, [], iter(value), None, None])
    return _PUSHED


def walk(r: Redactor, root: Any, state: dict[int, Any]) -> Any:
    """Iterative depth-first copy with an explicit stack: depth is bounded only by memory.

    A frame is ``[kind, id(source), output, iterator, pending key, forced key]``; ``state`` is as in
    :func:`copy_tree`. A frame's loop breaks when it pushes a child; the child's copy is handed back to it
    when the child's frame finishes, and its iterator resumes where it stopped.
    """
    stack: list[list[Any]] = []
    result = _open(r, root, stack, state)
    if result is not _PUSHED:
        return result
    rstr = r.redact_str
    key_cache = r._key_cache
    slow_key = r._any_key
    passthrough = PASSTHROUGH
    while True:
        frame = stack[-1]
        kind, out, it = frame[0], frame[2], frame[3]
        if kind == _DICT:
            force = frame[5]
            for k, v in it:
                hit = key_cache.get(k) if type(k) is str else None
                nk, sensitive = hit if hit is not None else slow_key(k)
                if nk is not k and nk in out:
                    nk = _unique(nk, out)
                if sensitive or (force is not None and k == force):
                    out[nk] = REDACTED
                    continue
                t = type(v)
                if t is str:
                    out[nk] = rstr(v)
                elif t in passthrough:
                    out[nk] = v
                else:
                    res = _open(r, v, stack, state)
                    if res is _PUSHED:
                        frame[4] = nk
                        break
                    out[nk] = res
            else:
                result = out
        else:
            append = out.append
            for v in it:
                t = type(v)
                if t is str:
                    append(rstr(v))
                elif t in passthrough:
                    append(v)
                else:
                    res = _open(r, v, stack, state)
                    if res is _PUSHED:
                        break
                    append(res)
            else:
                result = _finish(kind, out)
        if stack[-1] is not frame:  # a child container was pushed: descend into it
            continue
        # The frame is finished: remember its copy and hand it to its parent.
        stack.pop()
        state[frame[1]] = result
        if not stack:
            return result
        parent = stack[-1]
        if parent[0] == _DICT:
            parent[2][parent[4]] = result
        else:
            parent[2].append(result)


def _finish(kind: int, items: list[Any]) -> Any:
    if kind == _LIST:
        return items
    if kind == _TUPLE:
        return tuple(items)
    if kind == _SET:
        return set(items)
    return frozenset(items)


def _unique(key: Any, out: dict[Any, Any]) -> str:
    """A key not yet in ``out``: two keys redacted to the same text must not overwrite each other."""
    n = 2
    while f"{key}#{n}" in out:
        n += 1
    return f"{key}#{n}"
