"""Database location: ``DATABASE_URL``, or a private PostgreSQL started from the ``pgserver`` wheel.

A machine with only Python and pip can run everything: when no database is configured, the first
process that asks starts a real PostgreSQL server in a data folder and the others share it. pgserver
stops it when the last process using it exits. The process prints the folder it uses (unless quiet).

Where the data folder is (:func:`pgdata_dir`):

1. ``AUTOMATE_PGDATA`` (or the ``data_dir`` argument), when set. An absolute path is used as it is; a
   relative one is resolved against the current directory (it is the caller's own choice of place).
2. Otherwise ``.automate/pgdata`` in the *project root*: the nearest directory, walking up from the
   current directory, that holds a ``manage.py`` or a ``pyproject.toml`` (the Django project's directory,
   or the repository root). So ``manage.py``, the worker and the tests find the same database from any
   subdirectory of the project, instead of silently starting a new, empty one. In this repository the
   tests (and anything run from the repository root) use ``<repo>/.automate/pgdata``; the example project,
   run from ``example/`` or below, uses ``example/.automate/pgdata``.
3. With neither marker anywhere above, ``.automate/pgdata`` under the current directory.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "DEFAULT_PGDATA",
    "PROJECT_MARKERS",
    "conninfo_from_django",
    "database_url",
    "django_database",
    "embedded_url",
    "pgdata_dir",
    "project_root",
]

#: The data folder, relative to the project root.
DEFAULT_PGDATA = ".automate/pgdata"
#: Files whose directory is a project root.
PROJECT_MARKERS = ("manage.py", "pyproject.toml")
_announced: set[str] = set()


def project_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest directory at or above ``start`` (default: the current directory) holding one of
    :data:`PROJECT_MARKERS`, or ``None``."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for directory in (here, *here.parents):
        if any((directory / marker).is_file() for marker in PROJECT_MARKERS):
            return directory
    return None


def pgdata_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The embedded server's data folder, by the rules in the module docstring (an absolute path)."""
    explicit = data_dir or os.environ.get("AUTOMATE_PGDATA")
    if explicit:
        return Path(explicit).resolve()  # relative: against the current directory
    root = project_root()
    return ((root if root is not None else Path.cwd()) / DEFAULT_PGDATA).resolve()


def embedded_url(data_dir: str | os.PathLike[str] | None = None, *, quiet: bool = False) -> str:
    """Start (or join) the embedded server in :func:`pgdata_dir` and return its connection URI."""
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
    path = pgdata_dir(data_dir)
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
            "(set DATABASE_URL=postgresql://user@host:5432/dbname to use another server, "
            "or AUTOMATE_PGDATA to use another data folder)",
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
