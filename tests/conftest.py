"""Shared fixtures. The database is always a real PostgreSQL (see tests/settings.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from hypothesis import HealthCheck, settings

# -- Hypothesis profiles ------------------------------------------------------------------------------
# "default": every run of the README command (and CI) tests the same examples, seeded from each test's
# source (derandomize implies no example database), without wall-clock deadlines or the timing-based
# too_slow health check, so a default run never fails at random.
# "fuzz" (HYPOTHESIS_PROFILE=fuzz, as ``nox -s fuzz`` sets it): fresh randomness and many more examples.
# Whatever it finds becomes an ``@example`` on the test, so the default run checks it from then on.
settings.register_profile(
    "default",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    max_examples=int(os.environ.get("AUTOMATE_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def conninfo() -> str:
    """A libpq conninfo for the (test) database Django is connected to."""
    s = connection.settings_dict
    parts = {"dbname": s["NAME"], "user": s["USER"], "password": s["PASSWORD"], "host": s["HOST"]}
    if s.get("PORT"):
        parts["port"] = s["PORT"]
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in parts.items() if v})


@pytest.fixture
def pg_conninfo(transactional_db: None) -> str:
    return conninfo()


@pytest.fixture
def listener(pg_conninfo: str) -> Iterator[psycopg.Connection]:
    """A real LISTEN connection on the outbox channel."""
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute("LISTEN automate_outbox")
        yield conn


def drain_notifies(conn: psycopg.Connection, timeout: float = 0.3) -> list[psycopg.Notify]:
    """Every notification that arrives within ``timeout`` seconds."""
    return list(conn.notifies(timeout=timeout))


@pytest.fixture
async def async_db_cleanup() -> AsyncIterator[None]:
    """Close the connections Django opened in its sync_to_async thread, so the test DB can be dropped."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's database setup, extended: the notifier thread's connection is closed before the
    test database is dropped (its teardown runs before the original's)."""
    yield
    from automate import notify

    notify.close()


@pytest.fixture(autouse=True)
def _notifier_idle_after_test() -> Iterator[None]:
    """A NOTIFY still being sent must not reach the next test's LISTEN connection."""
    yield
    from automate import notify

    notify.wait_idle()
