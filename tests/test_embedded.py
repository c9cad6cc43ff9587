"""The database location helpers and the embedded server."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from automate.embedded import database_url, django_database


def test_django_database_from_url():
    entry = django_database("postgresql://app:s3cret@db.example:6543/shop?sslmode=require")
    assert entry["ENGINE"] == "django.db.backends.postgresql"
    assert (entry["NAME"], entry["USER"], entry["PASSWORD"], entry["HOST"], entry["PORT"]) == (
        "shop",
        "app",
        "s3cret",
        "db.example",
        "6543",
    )
    assert entry["OPTIONS"] == {"sslmode": "require"}


def test_django_database_from_socket_uri():
    entry = django_database("postgresql://postgres:@/postgres?host=/tmp/pgdata")
    assert (entry["NAME"], entry["HOST"], entry["PASSWORD"]) == ("postgres", "/tmp/pgdata", "")


def test_bad_url_is_a_clear_error():
    with pytest.raises(psycopg.ProgrammingError):
        django_database("not a url ===")


def test_database_url_prefers_the_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:1/d")
    assert database_url() == "postgresql://u@h:1/d"


@pytest.mark.timeout(120)
def test_embedded_server_starts_in_a_fresh_folder_and_says_where(tmp_path):
    """A new data folder gets a real server; the process prints where it is and how to use another."""
    data = tmp_path / "pgdata"
    code = (
        "import psycopg\n"
        "from automate.embedded import embedded_url\n"
        "url = embedded_url()\n"
        "with psycopg.connect(url) as c:\n"
        "    print('VERSION', c.execute('show server_version_num').fetchone()[0])\n"
    )
    env = {**os.environ, "AUTOMATE_PGDATA": str(data)}
    env.pop("DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split("VERSION")[1]) >= 140000
    assert str(data) in proc.stderr and "DATABASE_URL" in proc.stderr
    assert (data / "PG_VERSION").exists()
