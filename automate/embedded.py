"""Database location: ``DATABASE_URL``, or a private PostgreSQL started from the ``pgserver`` wheel.

A machine with only Python and pip can run everything: when no database is configured, the first
process that asks starts a real PostgreSQL server in a data folder (``AUTOMATE_PGDATA``, default
``.automate/pgdata`` under the current directory) and the others share it. pgserver stops it when the
last process using it exits.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["DEFAULT_PGDATA", "conninfo_from_django", "database_url", "django_database", "embedded_url"]

DEFAULT_PGDATA = ".automate/pgdata"
_announced: set[str] = set()


def embedded_url(data_dir: str | os.PathLike[str] | None = None, *, quiet: bool = False) -> str:
    """Start (or join) the embedded server and return its connection URI."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "No database configured and the embedded server is not installed. Either set DATABASE_URL "
            "(postgresql://user@host:5432/db) or install the extra: pip install 'django-automate[embedded]'."
        ) from exc
    path = Path(data_dir or os.environ.get("AUTOMATE_PGDATA") or DEFAULT_PGDATA).resolve()
    path.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        server = pgserver.get_server(path, cleanup_mode="stop")
    uri: str = server.get_uri()
    if not quiet and str(path) not in _announced:
        _announced.add(str(path))
        print(
            f"automate: using the embedded PostgreSQL in {path} "
            "(set DATABASE_URL=postgresql://user@host:5432/dbname to use another server)",
            file=sys.stderr,
        )
    return uri


def database_url(env_var: str = "DATABASE_URL") -> str:
    """``$DATABASE_URL`` when set, else the embedded server's URI."""
    return os.environ.get(env_var) or embedded_url()


def django_database(url: str, **extra: Any) -> dict[str, Any]:
    """A Django ``DATABASES`` entry for a libpq URI or key=value conninfo string."""
    params = conninfo_to_dict(url)
    entry: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.pop("dbname", "postgres"),
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", "") or "",
        "HOST": params.pop("host", ""),
        "PORT": str(params.pop("port", "")),
        "OPTIONS": {k: v for k, v in params.items() if v is not None},
    }
    entry.update(extra)
    return entry


def conninfo_from_django(settings_dict: dict[str, Any], **extra: Any) -> str:
    """A libpq conninfo string for a Django ``DATABASES`` entry (the worker and the notifier use it)."""
    params: dict[str, Any] = {
        "dbname": settings_dict.get("NAME"),
        "user": settings_dict.get("USER"),
        "password": settings_dict.get("PASSWORD"),
        "host": settings_dict.get("HOST"),
        "port": settings_dict.get("PORT"),
    }
    for key, value in (settings_dict.get("OPTIONS") or {}).items():
        if isinstance(value, str | int) and not isinstance(value, bool):
            params[key] = value
    params.update(extra)
    return make_conninfo(**{k: v for k, v in params.items() if v not in (None, "")})
