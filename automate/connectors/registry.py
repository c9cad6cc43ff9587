"""Connector registry: code -> connector instance.

Built-in connectors are registered when :mod:`automate.connectors` is imported. Connectors from users come
from two places, loaded once, lazily, the first time the registry is asked for a code (and loaded again
after ``DJANGO_AUTOMATE`` changes, e.g. under ``override_settings``):

- ``DJANGO_AUTOMATE["CONNECTORS"]``: dotted paths, each to a class (instantiated with no arguments) or to
  an instance;
- the ``automate.connectors`` entry point group of the installed distributions
  (``[project.entry-points."automate.connectors"]`` in a package's pyproject.toml), same targets.

A path that cannot be imported, a target that does not implement :class:`~automate.connectors.Connector`,
or a code already taken (by a built-in or another connector) raises ``ImproperlyConfigured`` naming
``DJANGO_AUTOMATE.CONNECTORS[i]`` or the entry point; ``manage.py check`` reports the same
(``automate.E002``).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import threading
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from automate.core.errors import SpecError

from .base import Connector

__all__ = [
    "ENTRY_POINT_GROUP",
    "clear_loaded",
    "get_connector",
    "load_connectors",
    "register",
    "registered_codes",
]

ENTRY_POINT_GROUP = "automate.connectors"
_SETTING = "DJANGO_AUTOMATE.CONNECTORS"
_CODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")

_REGISTRY: dict[str, Connector] = {}  # built-ins, and connectors passed to register()
_loaded: dict[str, Connector] | None = None  # from CONNECTORS and entry points; None: not loaded yet
_generation = 0  # bumped by clear_loaded(): a load that began before a settings change is not kept
_lock = threading.Lock()


def register(connector: Connector) -> Connector:
    if not isinstance(connector, Connector):
        raise TypeError(f"{connector!r} does not implement the Connector protocol")
    _REGISTRY[connector.code] = connector
    return connector


def _protocol_problem(target: Any) -> str | None:
    """Why ``target`` is not a usable connector, or None."""
    missing = [
        name for name in ("code", "needs_network", "is_llm", "validate_config", "run") if not hasattr(target, name)
    ]
    if missing:
        return f"it does not implement the Connector protocol (missing: {', '.join(missing)})"
    code = target.code
    if not isinstance(code, str) or not _CODE_RE.match(code):
        return (
            f"its code {code!r} is not a connector code (a letter, then up to 63 letters, digits, "
            f"'_', '.' or '-')"
        )
    for flag in ("needs_network", "is_llm"):
        if not isinstance(getattr(target, flag), bool):
            return f"its {flag} must be a bool"
    if not callable(target.validate_config):
        return "its validate_config is not callable"
    if not inspect.iscoroutinefunction(target.run):
        return "its run must be an async method (async def run(self, config, ctx))"
    return None


def _instantiate(where: str, target: Any, shown: str) -> Connector:
    if isinstance(target, type):
        problem = _protocol_problem(target)  # checked on the class first: a clearer message
        if problem is not None:
            raise ImproperlyConfigured(f"{where}: {shown} is not a connector: {problem}.")
        try:
            target = target()
        except Exception as exc:
            raise ImproperlyConfigured(
                f"{where}: {shown} could not be instantiated with no arguments: {type(exc).__name__}: {exc}"
            ) from exc
    problem = _protocol_problem(target)
    if problem is not None:
        raise ImproperlyConfigured(f"{where}: {shown} is not a connector: {problem}.")
    return target


def _from_setting(paths: Iterable[str]) -> Iterable[tuple[str, Connector]]:
    for i, path in enumerate(paths):
        where = f"{_SETTING}[{i}]"
        if not isinstance(path, str) or "." not in path:
            raise ImproperlyConfigured(
                f"{where}: {path!r} is not a dotted path to a connector class or instance "
                f"('myapp.connectors.UppercaseConnector')."
            )
        try:
            target = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"{where}: cannot import {path!r} ({exc}).") from exc
        yield where, _instantiate(where, target, repr(path))


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _from_entry_points(entry_points: Iterable[importlib.metadata.EntryPoint]) -> Iterable[tuple[str, Connector]]:
    for ep in entry_points:
        dist = getattr(ep, "dist", None)
        origin = f" of {dist.name}" if dist is not None and getattr(dist, "name", None) else ""
        where = f"entry point {ep.name!r}{origin} (group {ENTRY_POINT_GROUP!r})"
        try:
            target = ep.load()
        except Exception as exc:  # ImportError, AttributeError, an error raised by the module itself
            raise ImproperlyConfigured(f"{where}: cannot load {ep.value!r} ({type(exc).__name__}: {exc}).") from exc
        yield where, _instantiate(where, target, repr(ep.value))


def load_connectors(
    paths: Iterable[str] | None = None,
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> dict[str, Connector]:
    """Load the users' connectors now (``CONNECTORS`` and the entry points, unless given) and make them the
    registry's; return them by code. Raises ``ImproperlyConfigured`` and changes nothing on a bad one."""
    global _loaded
    generation = _generation
    if paths is None:
        from automate.conf import get_settings

        paths = get_settings().CONNECTORS
    found: dict[str, tuple[str, Connector]] = {}
    sources = [*_from_setting(paths), *_from_entry_points(_entry_points() if entry_points is None else entry_points)]
    for where, connector in sources:
        code = connector.code
        builtin = _REGISTRY.get(code)
        if builtin is not None:
            raise ImproperlyConfigured(
                f"{where}: code {code!r} clashes with the built-in connector {type(builtin).__qualname__}; "
                f"give the connector another code."
            )
        if code in found:
            first, other = found[code]
            if type(other) is type(connector):
                continue  # the same connector named twice (the setting and its own entry point)
            raise ImproperlyConfigured(f"{where}: code {code!r} is already used by {first}.")
        found[code] = (where, connector)
    loaded = {code: connector for code, (_, connector) in found.items()}
    with _lock:
        if generation == _generation:
            _loaded = loaded
    return dict(loaded)


def _users() -> dict[str, Connector]:
    loaded = _loaded
    if loaded is None:
        with _lock:
            loaded = _loaded
        if loaded is None:
            loaded = load_connectors()
    return loaded


def clear_loaded() -> None:
    """Forget the users' connectors: they are loaded again on the registry's next use."""
    global _loaded, _generation
    with _lock:
        _loaded = None
        _generation += 1


def get_connector(code: str) -> Connector:
    users = _users()  # first use: loads (and checks) the users' connectors, even to find a built-in
    try:
        return _REGISTRY.get(code) or users[code]
    except KeyError:
        known = ", ".join(sorted({*_REGISTRY, *users})) or "none"
        raise SpecError(f"unknown connector type {code!r} (registered: {known})") from None


def registered_codes() -> tuple[str, ...]:
    return tuple(sorted({*_REGISTRY, *_users()}))


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting == "DJANGO_AUTOMATE":
        clear_loaded()


setting_changed.connect(_on_setting_changed, dispatch_uid="automate.connectors.registry.clear_loaded")
