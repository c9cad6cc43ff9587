"""Secrets and redaction: the public facade.

    from automate.secrets import resolve, redact

    resolve("$secret:STRIPE_KEY")   # -> the value, from the configured backend (see automate.secret_backends)
    redact({"api_key": "...", "note": "Bearer abc..."})   # -> a redacted copy

A reference is ``"$secret:NAME"``; a bare ``"NAME"`` is accepted too (``resolve`` is only ever handed
references). ``NAME`` matches ``^[A-Za-z_][A-Za-z0-9_]*$`` and has at most 200 characters; anything else is
a ``ValueError``. A missing secret raises :class:`~automate.core.errors.SecretNotFound` naming the
reference, never a value.

The worker resolves a run's secrets through a :class:`SecretScope`, which remembers every value it
resolved and whose :attr:`SecretScope.redactor` scrubs those literal values from everything the run logs,
traces or stores, wherever they turn up.
"""

from __future__ import annotations

import inspect
import re
import threading
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from automate.core.errors import SecretNotFound
from automate.core.redaction import REDACTED, Redactor, default_redactor
from automate.secret_backends import (
    AsyncSecretBackend,
    DatabaseSecretBackend,
    EnvSecretBackend,
    SecretBackend,
    SecretBackendUnavailable,
    SecretDecryptionError,
    get_backend,
    in_db_thread,
)

__all__ = [
    "REDACTED",
    "SECRET_REF_PREFIX",
    "AsyncSecretBackend",
    "DatabaseSecretBackend",
    "EnvSecretBackend",
    "Redactor",
    "SecretBackend",
    "SecretBackendUnavailable",
    "SecretDecryptionError",
    "SecretNotFound",
    "SecretScope",
    "aresolve",
    "delete_secret",
    "get_backend",
    "get_redactor",
    "is_secret_ref",
    "parse_ref",
    "redact",
    "resolve",
    "set_secret",
]

SECRET_REF_PREFIX = "$secret:"  # noqa: S105 - the reference syntax, not a password
NAME_MAX_LENGTH = 200  # automate.models.Secret.name
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# -- references -------------------------------------------------------------------------------------------


def parse_ref(ref: str) -> str:
    """``"$secret:NAME"`` (or ``"NAME"``) -> ``"NAME"``; ``ValueError`` for anything else.

    The message quotes the input only when it starts with ``$secret:`` (then it is meant as a reference);
    a bare string might be a value passed by mistake and is never echoed.
    """
    if not isinstance(ref, str):
        raise TypeError(f"a secret reference is a str, not {type(ref).__name__}")
    prefixed = ref.startswith(SECRET_REF_PREFIX)
    name = ref[len(SECRET_REF_PREFIX) :] if prefixed else ref
    if len(name) > NAME_MAX_LENGTH or not _NAME_RE.match(name):
        shown = f" {redact(ref[:80])!r}" if prefixed else ""
        raise ValueError(
            f"malformed secret reference{shown}: expected '$secret:NAME' (or 'NAME') where NAME matches "
            f"^[A-Za-z_][A-Za-z0-9_]*$ and has at most {NAME_MAX_LENGTH} characters"
        )
    return name


def is_secret_ref(value: Any) -> bool:
    """Whether ``value`` is a well-formed ``"$secret:NAME"`` string (the bare form does not count here)."""
    if not isinstance(value, str) or not value.startswith(SECRET_REF_PREFIX):
        return False
    name = value[len(SECRET_REF_PREFIX) :]
    return len(name) <= NAME_MAX_LENGTH and _NAME_RE.match(name) is not None


def _not_found(name: str, backend: SecretBackend) -> SecretNotFound:
    exc = SecretNotFound(SECRET_REF_PREFIX + name)
    where = getattr(backend, "where", None)
    exc.add_note(where(name) if callable(where) else f"looked up with {type(backend).__qualname__}.get()")
    return exc


def _checked(name: str, value: Any, backend: SecretBackend) -> str:
    if value is None:
        raise _not_found(name, backend)
    if not isinstance(value, str):
        raise TypeError(
            f"secret backend {type(backend).__qualname__} returned a {type(value).__name__} for "
            f"{SECRET_REF_PREFIX}{name}; a secret value is a str"
        )
    return value


async def _aget(backend: SecretBackend, name: str) -> Any:
    aget = getattr(backend, "aget", None)
    if aget is not None:
        result = aget(name)
        return await result if inspect.isawaitable(result) else result
    # A backend without aget: its get in a pool thread (in_db_thread says why not asgiref's one shared
    # thread), with Django's connections recycled around it in case it uses the ORM.
    return await in_db_thread(backend.get, name)


# -- resolving --------------------------------------------------------------------------------------------


def resolve(ref: str) -> str:
    """The value of a ``$secret:NAME`` reference, from the configured backend.

    Raises ``ValueError`` for a malformed reference, :class:`SecretNotFound` when there is no such secret,
    :class:`SecretDecryptionError` when a stored value cannot be decrypted.
    """
    name = parse_ref(ref)
    backend = get_backend()
    return _checked(name, backend.get(name), backend)


async def aresolve(ref: str) -> str:
    """:func:`resolve` for async code: the env backend answers inline, the db backend (and any backend
    without ``aget``) in a pool thread, so the event loop is never blocked and lookups do not queue behind
    each other. Raises :class:`SecretBackendUnavailable` (a ``ConnectionError``) when the store is
    unreachable."""
    name = parse_ref(ref)
    backend = get_backend()
    return _checked(name, await _aget(backend, name), backend)


def _store() -> Any:
    backend = get_backend()
    if not callable(getattr(backend, "set", None)) or not callable(getattr(backend, "delete", None)):
        raise ImproperlyConfigured(
            f"set_secret()/delete_secret() store through the configured backend, and "
            f"DJANGO_AUTOMATE.SECRETS.backend ({type(backend).__qualname__}) cannot store secrets: "
            f"use 'db' (or a custom backend with set(name, value) and delete(name) methods)."
        )
    return backend


def set_secret(name: str, value: str, *, actor: str = "system") -> str:
    """Store ``value`` under ``name`` through the configured backend (``db``: encrypted, upserted).

    Returns ``"created"``, ``"updated"`` or ``"unchanged"``. A change is audited as ``secret.created`` or
    ``secret.updated`` by ``actor``, with the name only, never the value.
    """
    name = parse_ref(name)
    if not isinstance(value, str):
        raise TypeError(f"a secret value is a str, not {type(value).__name__}")
    backend = _store()
    if getattr(backend, "audits_writes", False):  # the db backend: audited in the write's transaction
        return str(backend.set(name, value, actor=actor))
    from django.db import transaction

    from automate import audit

    previous = backend.get(name)
    if previous == value:
        return "unchanged"
    status = "created" if previous is None else "updated"
    with transaction.atomic():  # the entry is rolled back if the backend refuses the write
        audit.record(actor, f"secret.{status}", f"secret:{name}", {"backend": type(backend).__qualname__})
        backend.set(name, value)
    return status


def delete_secret(name: str, *, actor: str = "system") -> bool:
    """Delete a stored secret; ``True`` when there was one (audited as ``secret.deleted`` by ``actor``)."""
    name = parse_ref(name)
    backend = _store()
    if getattr(backend, "audits_writes", False):
        return bool(backend.delete(name, actor=actor))
    from django.db import transaction

    from automate import audit

    with transaction.atomic():
        deleted = bool(backend.delete(name))
        if deleted:
            audit.record(actor, "secret.deleted", f"secret:{name}", {"backend": type(backend).__qualname__})
    return deleted


# -- redaction --------------------------------------------------------------------------------------------

_redactors: dict[tuple[tuple[str, ...], tuple[str, ...]], Redactor] = {}


def get_redactor() -> Redactor:
    """The redactor for the settings: builtin rules plus ``SECRETS.redact_keys`` / ``redact_patterns``.

    Without configured Django settings (a plain script), the builtin rules.
    """
    if not django_settings.configured:
        return default_redactor
    from automate.conf import get_settings

    conf = get_settings().SECRETS
    cache_key = (conf.redact_keys, conf.redact_patterns)
    redactor = _redactors.get(cache_key)
    if redactor is None:
        patterns = []
        for i, pattern in enumerate(conf.redact_patterns):
            try:
                patterns.append(re.compile(pattern))
            except re.error as exc:
                raise ImproperlyConfigured(
                    f"DJANGO_AUTOMATE.SECRETS.redact_patterns[{i}] is not a valid regular expression: {exc}"
                ) from None
        redactor = Redactor(extra_keys=conf.redact_keys, extra_patterns=patterns)
        _redactors.clear()
        _redactors[cache_key] = redactor
    return redactor


def redact(data: Any) -> Any:
    """A redacted copy of ``data``: sensitive keys, token-like values, credentials in strings.

    See :mod:`automate.core.redaction` for the exact rules. Inside a run, use the run's
    :attr:`SecretScope.redactor`, which also scrubs the values of the secrets the run resolved.
    """
    return get_redactor().redact(data)


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting == "DJANGO_AUTOMATE":
        _redactors.clear()


setting_changed.connect(_on_setting_changed, dispatch_uid="automate.secrets.clear_redactors")


# -- run scope --------------------------------------------------------------------------------------------


class SecretScope:
    """Resolves secrets for one run and remembers their values, so nothing the run produces leaks them.

        scope = SecretScope()
        token = scope.resolve("$secret:SLACK_TOKEN")
        ...
        log(scope.redact(record))          # or scope.redactor.redact(...)

    A name is fetched from the backend once per scope (later resolutions reuse the value, so a run sees
    one value even if the secret is rotated meanwhile). :meth:`remember` adds a value obtained some other
    way (an OAuth access token a step received). Thread-safe. ``repr`` shows names, never values.
    """

    __slots__ = ("_backend", "_base", "_lock", "_redactor", "_values")

    def __init__(self, *, backend: SecretBackend | None = None, redactor: Redactor | None = None) -> None:
        self._backend = backend
        self._base = redactor if redactor is not None else get_redactor()
        self._values: dict[str, str] = {}
        self._redactor: Redactor | None = self._base
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SecretScope(names={sorted(self._values)!r})"

    @property
    def backend(self) -> SecretBackend:
        return self._backend if self._backend is not None else get_backend()

    @property
    def names(self) -> tuple[str, ...]:
        """The names resolved so far (``remember``-ed values have no name and are not listed)."""
        return tuple(sorted(n for n in self._values if not n.startswith("\0")))

    def _keep(self, key: str, value: str) -> None:
        with self._lock:
            if self._values.get(key) != value:
                self._values[key] = value
                self._redactor = None

    def resolve(self, ref: str) -> str:
        name = parse_ref(ref)
        value = self._values.get(name)
        if value is None:
            backend = self.backend
            value = _checked(name, backend.get(name), backend)
            self._keep(name, value)
        return value

    async def aresolve(self, ref: str) -> str:
        name = parse_ref(ref)
        value = self._values.get(name)
        if value is None:
            backend = self.backend
            value = _checked(name, await _aget(backend, name), backend)
            self._keep(name, value)
        return value

    def remember(self, value: str) -> None:
        """Scrub ``value`` too, from now on (a credential that did not come from a reference)."""
        if not isinstance(value, str):
            raise TypeError(f"a secret value is a str, not {type(value).__name__}")
        with self._lock:
            if value in self._values.values():
                return
            key = f"\0{len(self._values)}"
        self._keep(key, value)

    @property
    def redactor(self) -> Redactor:
        """The settings' redactor plus every value resolved (or remembered) in this scope so far."""
        redactor = self._redactor
        if redactor is None:
            with self._lock:
                redactor = self._redactor
                if redactor is None:
                    redactor = self._base.with_secrets(self._values.values())
                    self._redactor = redactor
        return redactor

    def redact(self, data: Any) -> Any:
        return self.redactor.redact(data)
