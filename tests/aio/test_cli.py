"""The installed ``automate-aio-worker`` script, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from automate.models import ExecutionRun, OutboxJob
from automate.runtime import emit_event
from automate.workflows import publish
from tests.aio.procs import ROOT
from tests.observability.lines import log_messages

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

SCRIPT = Path(sys.executable).parent / "automate-aio-worker"

BANNER = re.compile(
    r"^automate-aio-worker (?P<id>\S+) db=(?P<db>\S+) concurrency=(?P<concurrency>\d+) batch=(?P<batch>\d+) "
    r"prefetch=(?P<prefetch>\d+) lease=(?P<lease>[\d.]+)s mode=(?P<mode>\w+) enabled=(?P<enabled>\w+) drain=(?P<drain>\w+) "
    r"loop=(?P<loop>\w+)$",
    re.MULTILINE,
)


def run_script(conninfo: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The console script, from ``cwd``, with nothing on PYTHONPATH: only what the script itself puts on
    sys.path can make ``tests.settings`` importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env["AUTOMATE_TEST_WORKER_DATABASE_URL"] = conninfo
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_installed_script_imports_settings_from_the_current_directory(pg_conninfo):
    """``automate-aio-worker --settings tests.settings`` works from the project root like ``python -m``."""
    assert SCRIPT.exists(), f"the console script is not installed at {SCRIPT}"
    publish("cli", trigger_spec={"event": "cli"}, steps=[{"id": "t", "type": "transform", "config": {"output": 1}}])
    emit_event("cli", {})
    proc = run_script(pg_conninfo, "--settings", "tests.settings", "--drain", "--concurrency", "7", "--batch-size", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ModuleNotFoundError" not in proc.stderr
    assert ExecutionRun.objects.get().status == "SUCCEEDED"
    assert OutboxJob.objects.get().status == "COMPLETED"

    out = log_messages(proc.stdout)  # the banner and the final line are log records (ECS lines here)
    banner = BANNER.search(out)
    assert banner, proc.stdout
    assert re.fullmatch(r".+-\d+-[0-9a-f]{6}", banner["id"])  # host-pid-random
    assert banner["db"] == conninfo_to_dict(pg_conninfo).get("host", "local")
    assert (banner["concurrency"], banner["batch"], banner["lease"]) == ("7", "3", "30")  # lease: the default
    assert banner["prefetch"] == "3"  # one batch beyond the semaphore, by default
    assert (banner["mode"], banner["enabled"], banner["drain"]) == ("thread", "True", "True")
    assert banner["loop"] == "asyncio"  # the default, even though uvloop is installed here
    assert f"automate-aio-worker {banner['id']} stopped: claimed=1 lost=0" in out


def test_a_missing_settings_module_is_still_an_import_error(pg_conninfo, tmp_path):
    """Run from elsewhere, ``tests.settings`` is not importable: the cwd is added, nothing more."""
    proc = run_script(pg_conninfo, "--settings", "tests.settings", "--drain", cwd=tmp_path)
    assert proc.returncode != 0
    assert "No module named 'tests'" in proc.stderr


def test_prefetch_is_an_option_and_a_negative_one_is_refused(pg_conninfo):
    proc = run_script(pg_conninfo, "--settings", "tests.settings", "--drain", "--prefetch", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    banner = BANNER.search(log_messages(proc.stdout))
    assert banner and banner["prefetch"] == "0", proc.stdout
    bad = run_script(pg_conninfo, "--settings", "tests.settings", "--drain", "--prefetch", "-1")
    assert bad.returncode == 2
    assert "automate-aio-worker: prefetch must be >= 0, got -1" in bad.stderr


def test_loop_uvloop_runs_the_worker_on_uvloop(pg_conninfo):
    publish("cli", trigger_spec={"event": "cli"}, steps=[{"id": "t", "type": "transform", "config": {"output": 1}}])
    emit_event("cli", {})
    proc = run_script(pg_conninfo, "--settings", "tests.settings", "--drain", "--loop", "uvloop")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    banner = BANNER.search(log_messages(proc.stdout))
    assert banner and banner["loop"] == "uvloop", proc.stdout
    assert ExecutionRun.objects.get().status == "SUCCEEDED"


def test_loop_uvloop_without_uvloop_says_how_to_install_it(pg_conninfo, tmp_path):
    """A Python where ``import uvloop`` fails (a stand-in package that raises ImportError shadows it)."""
    (tmp_path / "uvloop").mkdir()
    (tmp_path / "uvloop" / "__init__.py").write_text("raise ImportError('no uvloop here')\n")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env |= {"AUTOMATE_TEST_WORKER_DATABASE_URL": pg_conninfo, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = subprocess.run([sys.executable, "-m", "automate.aio", "--settings", "tests.settings", "--drain",
                           "--loop", "uvloop"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--loop uvloop: uvloop is not installed (pip install 'django-automate[uvloop]')" in proc.stderr
    bad = run_script(pg_conninfo, "--settings", "tests.settings", "--loop", "trio")
    assert bad.returncode == 2 and "invalid choice: 'trio'" in bad.stderr
