"""The single entry point for checks: ``nox -s tests lint types imports migrations``.

``pytest`` alone also works (see the README). Sessions use uv when it is installed, else virtualenv.
"""

from __future__ import annotations

import random

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "types", "imports", "migrations"]
nox.options.reuse_existing_virtualenvs = True

DJANGO_FOR_PYTHON = {"3.11": "Django>=5.2,<5.3", "3.12": "Django>=6.0,<7"}  # Django 6 needs 3.12+


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The suite on the current interpreter (Django 5.2 on Python 3.11, as the README runs it)."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=False)
def fuzz(session: nox.Session) -> None:
    """Every property test with fresh randomness and many more examples (HYPOTHESIS_PROFILE=fuzz).

    The default run is derandomized (tests/conftest.py), so it cannot fail at random; this session
    searches. Turn whatever it finds into an ``@example`` on the test, with the fix. AUTOMATE_FUZZ_EXAMPLES
    sets the examples per test (20000 by default); ``nox -s fuzz -- -k rules`` narrows the tests.
    """
    session.run(
        "python", "-m", "pytest", "tests", "-m", "hypothesis", "-p", "no:cacheprovider", *session.posargs,
        env={"HYPOTHESIS_PROFILE": "fuzz"},
    )


@nox.session(python=False)
def chaos(session: nox.Session) -> None:
    """The fault-injection test at full size: ``nox -s chaos [-- SEED [pytest options]]``.

    Without a SEED (an integer) a random one is drawn and printed, so a failing run can be repeated.
    """
    args = list(session.posargs)
    seed = args.pop(0) if args and args[0].lstrip("-").isdigit() else str(random.randrange(2**31))
    session.log(f"AUTOMATE_CHAOS_SEED={seed}  (re-run with: nox -s chaos -- {seed})")
    session.run(
        "python", "-m", "pytest", "tests/aio/test_chaos.py", "-p", "no:cacheprovider", *args,
        env={"AUTOMATE_CHAOS_JOBS": "3000", "AUTOMATE_CHAOS_SEED": seed},
    )


@nox.session(python=list(DJANGO_FOR_PYTHON))
def matrix(session: nox.Session) -> None:
    """The suite in a fresh virtualenv per supported Django: 5.2 LTS on 3.11, 6.0 on 3.12."""
    session.install("-e", ".[embedded,test]", DJANGO_FOR_PYTHON[str(session.python)])
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", "automate", "tests", "benchmarks", "example", "noxfile.py")


@nox.session(python=False)
def types(session: nox.Session) -> None:
    session.run("mypy", "automate")


@nox.session(python=False)
def imports(session: nox.Session) -> None:
    """Layering: automate.core imports no Django or psycopg; automate.aio never imports automate.models."""
    session.run("lint-imports")


@nox.session(python=False)
def migrations(session: nox.Session) -> None:
    session.run(
        "python", "-m", "django", "makemigrations", "--check", "--dry-run",
        "--settings", "tests.settings", "--pythonpath", ".",
    )


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Every benchmark against one private PostgreSQL: ``nox -s bench [-- --quick] [-- --profile]``.

    Runs ``python -m benchmarks`` (benchmarks/suite.py) with the arguments after ``--``; writes
    benchmarks/results/<date>.json, .md and one PNG per group. Needs the ``bench`` extra.
    """
    session.run("python", "-m", "benchmarks", *session.posargs)
