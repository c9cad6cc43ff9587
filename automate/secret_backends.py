"""Where ``$secret:NAME`` values come from: the ``SecretBackend`` protocol and its implementations.

``DJANGO_AUTOMATE["SECRETS"]["backend"]`` chooses one:

- ``"env"`` (default): ``os.environ[f"{prefix}{NAME}"]``, prefix ``SECRETS.prefix`` (``"AUTOMATE_"``), read at
  each lookup (so a rotated variable is seen without a restart of the resolver).
- ``"db"``: the ``automate_secret`` table (:class:`automate.models.Secret`), each value encrypted at rest
  with Fernet (AES-128-CBC + HMAC-SHA256). The key is ``SECRETS.encryption_key``, else the environment
  variable ``AUTOMATE_SECRETS_KEY``; a comma-separated list rotates keys (``MultiFernet``: the first key
  encrypts, every key decrypts; :meth:`DatabaseSecretBackend.rotate` re-encrypts every row with the first).
  Make a key with ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``.
- a dotted path (``"myproject.vault.VaultBackend"``) to a class (instantiated with no arguments) or to an
  object, either implementing :class:`SecretBackend`.

The loaded backend is cached per settings value and the cache is dropped when ``DJANGO_AUTOMATE`` changes
(``setting_changed``, so ``override_settings`` works).

A lookup that fails because the database is unreachable (the connection was cut, the server restarts)
raises :class:`SecretBackendUnavailable`, a ``ConnectionError``: the worker classes it as transient and
retries the step. The ``db`` backend first recycles the broken connection and retries the query once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from asgiref.sync import sync_to_async
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import InterfaceError, OperationalError, close_old_connections, connections, router
from django.utils.module_loading import import_string

from automate.core.errors import AutomateError

__all__ = [
    "KEY_ENV_VAR",
    "AsyncSecretBackend",
    "DatabaseSecretBackend",
    "EnvSecretBackend",
    "SecretBackend",
    "SecretBackendUnavailable",
    "SecretDecryptionError",
    "clear_backend_cache",
    "get_backend",
    "in_db_thread",
    "load_backend",
]

#: The environment variable read when ``SECRETS.encryption_key`` is not set.
KEY_ENV_VAR = "AUTOMATE_SECRETS_KEY"
_BACKEND_SETTING = "DJANGO_AUTOMATE.SECRETS.backend"
_KEY_SETTING = "DJANGO_AUTOMATE.SECRETS.encryption_key"


@runtime_checkable
class SecretBackend(Protocol):
    """The one required method. ``get`` returns the value, or ``None`` when there is no such secret.

    It must not raise for a missing secret (the resolver raises ``SecretNotFound`` naming the reference),
    and nothing it raises should carry a secret value. ``name`` is already validated
    (``^[A-Za-z_][A-Za-z0-9_]*$``, at most 200 characters). A backend may also define
    ``async def aget(self, name) -> str | None`` (see :class:`AsyncSecretBackend`); without it the async
    resolver runs ``get`` in a pool thread, so ``get`` may block (network, ORM) and must be thread-safe
    (several lookups may run at once). Raise a ``ConnectionError`` (such as
    :class:`SecretBackendUnavailable`) when the store is unreachable: the worker retries such a step.
    """

    def get(self, name: str) -> str | None: ...


@runtime_checkable
class AsyncSecretBackend(SecretBackend, Protocol):
    """A backend that can also be awaited without a thread (an async HTTP client to a vault, ...)."""

    async def aget(self, name: str) -> str | None: ...


class SecretDecryptionError(AutomateError):
    """A stored secret could not be decrypted (wrong key or corrupt row). Names the secret, never data."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"secret {name!r} could not be decrypted: it was encrypted with a key that is not in "
            f"{_KEY_SETTING} (or ${KEY_ENV_VAR}), or the stored ciphertext is corrupt"
        )
        self.name = name


class SecretBackendUnavailable(AutomateError, ConnectionError):
    """The secret store could not be reached (a lost or refused database connection). Transient: a
    ``ConnectionError``, so the worker retries the step. Names the secret and the failure, never a value."""

    def __init__(self, name: str, cause: BaseException) -> None:
        detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        super().__init__(f"secret {name!r} could not be looked up: the database is unavailable ({detail})")
        self.name = name


_DB_CONNECTION_ERRORS = (OperationalError, InterfaceError)


def _run_recycling_connections(fn: Any, *args: Any) -> Any:
    # What Django does around a request: a connection that is broken or past CONN_MAX_AGE is closed
    # before and after the work (with the default CONN_MAX_AGE=0 that means one connection per lookup,
    # closed again at once, so no idle connection is left in a pool thread).
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()


async def in_db_thread(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a worker thread for async code, with Django's connections recycled around it.

    ``thread_sensitive=False``: asgiref's default (``True``) runs every call in one shared thread, so each
    secret lookup of every run would queue behind the others (and behind anything else that thread does),
    and that thread's connection, never recycled, stays broken for good once the server drops it. Here
    each call runs in the loop's thread pool; Django connections are per thread, and each is closed or
    kept per ``CONN_MAX_AGE`` around the call, like a request.
    """
    return await sync_to_async(_run_recycling_connections, thread_sensitive=False)(fn, *args)


class EnvSecretBackend:
    """Secrets from environment variables: ``NAME`` is read from ``{prefix}NAME``."""

    def __init__(self, prefix: str = "AUTOMATE_", environ: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        self._environ = environ

    def get(self, name: str) -> str | None:
        environ = os.environ if self._environ is None else self._environ
        return environ.get(self.prefix + name)

    async def aget(self, name: str) -> str | None:
        return self.get(name)  # a dict lookup: no need for a thread

    def where(self, name: str) -> str:
        return f"looked up environment variable {self.prefix}{name}"

    def __repr__(self) -> str:
        return f"EnvSecretBackend(prefix={self.prefix!r})"


def _secret_model() -> Any:
    """``automate.models.Secret``, looked up through the app registry: this module is reachable from the
    asyncio worker, which must not import ``automate.models`` (an import-linter contract)."""
    return apps.get_model("automate", "Secret")


def _fernet(keys: str | Sequence[str]) -> MultiFernet:
    if isinstance(keys, str):
        keys = keys.split(",")
    parsed = [k.strip() for k in keys if k and k.strip()]
    if not parsed:
        raise ImproperlyConfigured(
            f"The 'db' secrets backend needs an encryption key: set {_KEY_SETTING} or the environment "
            f"variable {KEY_ENV_VAR} (a Fernet key; several, comma-separated, to rotate)."
        )
    fernets = []
    for i, key in enumerate(parsed):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # The key itself is never echoed.
            raise ImproperlyConfigured(
                f"{_KEY_SETTING}: key #{i + 1} is not a valid Fernet key (32 url-safe base64-encoded bytes)."
            ) from None
    return MultiFernet(fernets)


class DatabaseSecretBackend:
    """Secrets in the ``automate_secret`` table, Fernet-encrypted at rest.

    ``keys``: one Fernet key, or several (a list, or one comma-separated string) for rotation: the first
    encrypts, all of them decrypt.
    """

    def __init__(self, keys: str | Sequence[str]) -> None:
        self._fernet = _fernet(keys)

    def __repr__(self) -> str:  # no key material
        return "DatabaseSecretBackend()"

    def where(self, name: str) -> str:
        return f"looked up the automate_secret row named {name!r}"

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, name: str, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretDecryptionError(name) from None

    def get(self, name: str) -> str | None:
        """The decrypted value, or ``None``. A connection found broken is closed and the query retried
        once (not inside a transaction, whose connection cannot be swapped); a second connection failure
        raises :class:`SecretBackendUnavailable`."""
        model = _secret_model()
        alias = router.db_for_read(model)
        try:
            ciphertext = self._fetch(model, alias, name)
        except _DB_CONNECTION_ERRORS as exc:
            connection = connections[alias]
            if connection.in_atomic_block:
                raise SecretBackendUnavailable(name, exc) from exc
            connection.close()  # a new connection on the next query
            try:
                ciphertext = self._fetch(model, alias, name)
            except _DB_CONNECTION_ERRORS as again:
                raise SecretBackendUnavailable(name, again) from again
        if ciphertext is None:
            return None
        return self.decrypt(name, ciphertext)

    @staticmethod
    def _fetch(model: Any, alias: str, name: str) -> str | None:
        value: str | None = model.objects.using(alias).filter(name=name).values_list("ciphertext", flat=True).first()
        return value

    async def aget(self, name: str) -> str | None:
        return await in_db_thread(self.get, name)

    #: set() and delete() write their own audit entries, in the transaction of the change.
    audits_writes = True

    def set(self, name: str, value: str, *, actor: str = "system") -> str:
        """Store ``value`` (encrypted) under ``name``, replacing any previous value.

        Returns ``"created"``, ``"updated"`` or ``"unchanged"`` (the same value: nothing is written). A
        change is audited (``secret.created`` / ``secret.updated``, by name only) in its transaction.
        """
        from django.db import transaction

        from automate import audit

        model = _secret_model()
        with transaction.atomic(using=router.db_for_write(model)):
            secret, created = model.objects.select_for_update().get_or_create(
                name=name, defaults={"ciphertext": self.encrypt(value)}
            )
            if not created:
                try:
                    unchanged = self.decrypt(name, secret.ciphertext) == value
                except SecretDecryptionError:
                    unchanged = False  # unreadable with the current keys: overwritten
                if unchanged:
                    return "unchanged"
                secret.ciphertext = self.encrypt(value)
                secret.save(update_fields=["ciphertext", "updated_at"])
            status = "created" if created else "updated"
            audit.record(actor, f"secret.{status}", f"secret:{name}", {"backend": "db"})
        return status

    def delete(self, name: str, *, actor: str = "system") -> bool:
        """Delete the secret; ``True`` when there was one (audited as ``secret.deleted``, by name)."""
        from django.db import transaction

        from automate import audit

        model = _secret_model()
        with transaction.atomic(using=router.db_for_write(model)):
            deleted, _ = model.objects.filter(name=name).delete()
            if deleted:
                audit.record(actor, "secret.deleted", f"secret:{name}", {"backend": "db"})
        return deleted > 0

    def rotate(self) -> int:
        """Re-encrypt every stored secret with the first key (after adding a new key in front).

        Returns how many rows were rewritten. Raises :class:`SecretDecryptionError` (and changes nothing)
        when a row cannot be decrypted with any of the keys.
        """
        from django.db import transaction

        count = 0
        with transaction.atomic():
            for secret in _secret_model().objects.select_for_update().only("pk", "name", "ciphertext"):
                try:
                    token = self._fernet.rotate(secret.ciphertext.encode("ascii"))
                except InvalidToken:
                    raise SecretDecryptionError(secret.name) from None
                secret.ciphertext = token.decode("ascii")
                secret.save(update_fields=["ciphertext", "updated_at"])
                count += 1
        return count


def load_backend(path: str, *, prefix: str = "AUTOMATE_", encryption_key: str | None = None) -> SecretBackend:
    """Build the backend named by ``path`` (``"env"``, ``"db"`` or a dotted path). Uncached."""
    if path == "env":
        return EnvSecretBackend(prefix)
    if path == "db":
        key = encryption_key or os.environ.get(KEY_ENV_VAR) or ""
        return DatabaseSecretBackend(key)
    try:
        target: Any = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"{_BACKEND_SETTING}: cannot import {path!r} ({exc}). Use 'env', 'db', or the dotted path of a "
            f"class or object with a get(name) -> str | None method."
        ) from exc
    if isinstance(target, type):
        try:
            target = target()
        except Exception as exc:
            raise ImproperlyConfigured(
                f"{_BACKEND_SETTING}: {path!r} could not be instantiated with no arguments: {exc}"
            ) from exc
    if not callable(getattr(target, "get", None)):
        raise ImproperlyConfigured(
            f"{_BACKEND_SETTING}: {path!r} is not a secret backend: it has no get(name) -> str | None method."
        )
    return target


_cache: dict[tuple[str, str, str | None, str | None], SecretBackend] = {}
_cache_lock = threading.Lock()


def get_backend() -> SecretBackend:
    """The backend chosen by the settings, loaded once per settings value."""
    from automate.conf import get_settings

    conf = get_settings().SECRETS
    env_key = os.environ.get(KEY_ENV_VAR) if conf.backend == "db" else None
    cache_key = (conf.backend, conf.prefix, conf.encryption_key, env_key)
    backend = _cache.get(cache_key)
    if backend is None:
        with _cache_lock:
            backend = _cache.get(cache_key)
            if backend is None:
                backend = load_backend(conf.backend, prefix=conf.prefix, encryption_key=conf.encryption_key)
                _cache.clear()  # one settings value at a time
                _cache[cache_key] = backend
    return backend


def clear_backend_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting == "DJANGO_AUTOMATE":
        clear_backend_cache()


setting_changed.connect(_on_setting_changed, dispatch_uid="automate.secret_backends.clear_backend_cache")
