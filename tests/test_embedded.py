"""The database location helpers and the embedded server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from automate.embedded import database_url, django_database, pgdata_dir, project_root


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


# -- where the data folder is ---------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_pgdata_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("AUTOMATE_PGDATA", raising=False)
    return monkeypatch


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root (pyproject.toml) with nested subdirectories."""
    root = tmp_path / "proj"
    (root / "src" / "app" / "deep").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    return root


def test_pgdata_is_the_same_from_any_subdirectory_of_the_project(project, no_pgdata_env):
    expected = project / ".automate" / "pgdata"
    for cwd in (project, project / "src", project / "src" / "app" / "deep"):
        no_pgdata_env.chdir(cwd)
        assert pgdata_dir() == expected, cwd


def test_the_nearest_manage_py_or_pyproject_is_the_project_root(project, no_pgdata_env):
    site = project / "src" / "app"
    (site / "manage.py").write_text("")
    no_pgdata_env.chdir(site / "deep")
    assert project_root() == site
    assert pgdata_dir() == site / ".automate" / "pgdata"


def test_the_repository_tests_use_the_repository_root(no_pgdata_env):
    for cwd in (REPO, REPO / "tests", REPO / "tests" / "aio", REPO / "automate" / "aio"):
        no_pgdata_env.chdir(cwd)
        assert pgdata_dir() == REPO / ".automate" / "pgdata", cwd
    no_pgdata_env.chdir(REPO / "example" / "project")
    assert pgdata_dir() == REPO / "example" / ".automate" / "pgdata"  # the example's manage.py


def test_without_a_project_the_current_directory(tmp_path, no_pgdata_env):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    no_pgdata_env.chdir(lonely)
    # The temp folder may itself sit below a project marker on some machines: then that project is the
    # answer. Worked out here independently, so the test asserts on every machine and never skips.
    marked = [p for p in (lonely, *lonely.parents) if (p / "manage.py").exists() or (p / "pyproject.toml").exists()]
    expected = marked[0] if marked else lonely
    assert project_root() == (marked[0] if marked else None)
    assert pgdata_dir() == expected / ".automate" / "pgdata"


def test_automate_pgdata_overrides_and_a_relative_one_is_against_the_cwd(project, no_pgdata_env, tmp_path):
    no_pgdata_env.chdir(project / "src")
    no_pgdata_env.setenv("AUTOMATE_PGDATA", "data/pg")
    assert pgdata_dir() == project / "src" / "data" / "pg"
    no_pgdata_env.setenv("AUTOMATE_PGDATA", str(tmp_path / "elsewhere"))
    assert pgdata_dir() == tmp_path / "elsewhere"
    assert pgdata_dir(tmp_path / "arg") == tmp_path / "arg"  # the argument wins over the variable


@pytest.mark.timeout(180)
def test_a_process_in_a_subdirectory_opens_the_projects_database(project):
    """Two processes, one in the project root and one three levels down, see the same database."""
    env = {k: v for k, v in os.environ.items() if k not in ("AUTOMATE_PGDATA", "DATABASE_URL")}
    write = (
        "import psycopg\n"
        "from automate.embedded import embedded_url\n"
        "with psycopg.connect(embedded_url(), autocommit=True) as c:\n"
        "    c.execute('CREATE TABLE made_in_the_root (x int)')\n"
    )
    read = (
        "import psycopg\n"
        "from automate.embedded import embedded_url\n"
        "with psycopg.connect(embedded_url(), autocommit=True) as c:\n"
        "    print('FOUND', c.execute(\"SELECT to_regclass('made_in_the_root') IS NOT NULL\").fetchone()[0])\n"
    )
    first = subprocess.run(
        [sys.executable, "-c", write], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    deep = project / "src" / "app" / "deep"
    second = subprocess.run(
        [sys.executable, "-c", read], cwd=deep, env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    assert "FOUND True" in second.stdout
    data = project / ".automate" / "pgdata"
    assert str(data) in second.stderr  # it says where
    assert not (deep / ".automate").exists()
