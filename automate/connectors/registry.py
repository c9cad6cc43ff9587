"""Connector registry: code -> connector instance."""

from __future__ import annotations

from automate.core.errors import SpecError

from .base import Connector

__all__ = ["get_connector", "register", "registered_codes"]

_REGISTRY: dict[str, Connector] = {}


def register(connector: Connector) -> Connector:
    if not isinstance(connector, Connector):
        raise TypeError(f"{connector!r} does not implement the Connector protocol")
    _REGISTRY[connector.code] = connector
    return connector


def get_connector(code: str) -> Connector:
    try:
        return _REGISTRY[code]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise SpecError(f"unknown connector type {code!r} (registered: {known})") from None


def registered_codes() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))
