"""Connectors from users: ``DJANGO_AUTOMATE["CONNECTORS"]`` and the ``automate.connectors`` entry points."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from automate.connectors import clear_loaded, get_connector, load_connectors, registered_codes
from automate.core.errors import SpecError
from automate.models import ExecutionRun, Workflow
from automate.runtime import emit_event
from automate.workflows import publish
from tests.aio.conftest import drain, make_config  # noqa: F401  (make_config is a fixture)
from tests.aio.procs import ROOT

# -- connectors the tests register ------------------------------------------------------------------------


class ReverseConnector:
    code: ClassVar[str] = "reverse"
    needs_network: ClassVar[bool] = False
    is_llm: ClassVar[bool] = False

    def validate_config(self, config: Mapping[str, Any], *, path: str) -> None:
        if "text" not in config:
            raise SpecError(f"{path}.text: required")

    async def run(self, config: Mapping[str, Any], ctx: Any) -> Any:
        return {"text": str(config["text"])[::-1]}


class EchoConnector(ReverseConnector):
    code: ClassVar[str] = "acme.echo"

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    async def run(self, config: Mapping[str, Any], ctx: Any) -> Any:
        return {"text": self.prefix + str(config["text"])}


ECHO = EchoConnector(prefix="> ")  # an instance, named by its dotted path


class NoRun:
    code = "norun"
    needs_network = False
    is_llm = False

    def validate_config(self, config: Any, *, path: str) -> None:
        pass


class SyncRun(ReverseConnector):
    code: ClassVar[str] = "syncrun"

    def run(self, config: Any, ctx: Any) -> Any:  # type: ignore[override]
        return {}


class BadCode(ReverseConnector):
    code: ClassVar[str] = "9 lives"


class NotBoolFlag(ReverseConnector):
    code: ClassVar[str] = "flag"
    needs_network = "yes"  # type: ignore[assignment]


class Clash(ReverseConnector):
    code: ClassVar[str] = "python"


class OtherReverse(ReverseConnector):
    pass  # same code as ReverseConnector, another class


class NeedsArgs(ReverseConnector):
    code: ClassVar[str] = "needsargs"

    def __init__(self, token: str) -> None:
        self.token = token


class ClearsWhileLoading(ReverseConnector):
    """Its loading races a settings change (which clears the registry) while the registry loads it."""

    code: ClassVar[str] = "racy"
    made = 0

    def __init__(self) -> None:
        type(self).made += 1
        clear_loaded()


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    clear_loaded()
    yield
    clear_loaded()


# -- DJANGO_AUTOMATE.CONNECTORS ---------------------------------------------------------------------------

HERE = "tests.connectors.test_registry"


def connectors(*paths: str) -> override_settings:
    return override_settings(DJANGO_AUTOMATE={"CONNECTORS": list(paths)})


def test_a_class_is_instantiated_and_an_instance_used_as_is():
    with connectors(f"{HERE}.ReverseConnector", f"{HERE}.ECHO"):
        assert isinstance(get_connector("reverse"), ReverseConnector)
        assert get_connector("acme.echo") is ECHO
        assert {"reverse", "acme.echo", "python", "email"} <= set(registered_codes())
    # loaded again when the setting changes: gone with the override
    with pytest.raises(SpecError, match="unknown connector type 'reverse'"):
        get_connector("reverse")
    assert "reverse" not in registered_codes()


def test_loaded_once_until_the_settings_change():
    with connectors(f"{HERE}.ReverseConnector"):
        first = get_connector("reverse")
        assert get_connector("reverse") is first  # not instantiated again
        with connectors(f"{HERE}.ReverseConnector", f"{HERE}.ECHO"):
            assert get_connector("reverse") is not first
            assert get_connector("acme.echo") is ECHO


def test_a_load_overtaken_by_a_settings_change_is_not_kept():
    ClearsWhileLoading.made = 0
    with connectors(f"{HERE}.ClearsWhileLoading"):
        assert isinstance(get_connector("racy"), ClearsWhileLoading)  # this call gets what it loaded
        assert isinstance(get_connector("racy"), ClearsWhileLoading)
        assert ClearsWhileLoading.made == 2  # ... but the stale result was not kept: loaded again


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["nodots"], "DJANGO_AUTOMATE.CONNECTORS[0]: 'nodots' is not a dotted path"),
        ([f"{HERE}.ReverseConnector", "tests.connectors.nowhere.Missing"],
         "DJANGO_AUTOMATE.CONNECTORS[1]: cannot import 'tests.connectors.nowhere.Missing' (No module named"),
        ([f"{HERE}.Missing"], f"DJANGO_AUTOMATE.CONNECTORS[0]: cannot import '{HERE}.Missing'"),
        ([f"{HERE}.NoRun"], "is not a connector: it does not implement the Connector protocol (missing: run)"),
        ([f"{HERE}.SyncRun"], "is not a connector: its run must be an async method"),
        ([f"{HERE}.BadCode"], "its code '9 lives' is not a connector code"),
        ([f"{HERE}.NotBoolFlag"], "its needs_network must be a bool"),
        (["os.path"], "DJANGO_AUTOMATE.CONNECTORS[0]: 'os.path' is not a connector: it does not implement"),
        ([f"{HERE}.NeedsArgs"], "could not be instantiated with no arguments: TypeError"),
        ([f"{HERE}.Clash"], "DJANGO_AUTOMATE.CONNECTORS[0]: code 'python' clashes with the built-in connector "
                            "PythonConnector"),
        ([f"{HERE}.ReverseConnector", f"{HERE}.OtherReverse"],
         "DJANGO_AUTOMATE.CONNECTORS[1]: code 'reverse' is already used by DJANGO_AUTOMATE.CONNECTORS[0]"),
    ],
)
def test_bad_connectors_raise_naming_the_setting_and_nothing_is_registered(paths, message):
    with connectors(*paths):
        with pytest.raises(ImproperlyConfigured) as info:
            get_connector("python")  # any use of the registry loads them
        assert message in str(info.value)
        with pytest.raises(ImproperlyConfigured):
            registered_codes()  # still refused: nothing half-loaded was kept
    assert "reverse" not in registered_codes()


@pytest.mark.django_db
def test_publish_refuses_with_a_bad_setting_and_stores_nothing():
    with connectors("nodots"), pytest.raises(ImproperlyConfigured, match=re.escape("DJANGO_AUTOMATE.CONNECTORS[0]")):
        publish("w", trigger_spec={"event": "e"}, steps=[{"id": "t", "type": "transform", "config": {"output": 1}}])
    assert not Workflow.objects.exists()


def test_the_same_connector_named_twice_is_loaded_once():
    with connectors(f"{HERE}.ReverseConnector", f"{HERE}.ReverseConnector"):
        assert isinstance(get_connector("reverse"), ReverseConnector)


def test_system_check_reports_a_bad_connector_and_passes_a_good_one(capsys):
    with connectors(f"{HERE}.NoRun"), pytest.raises(Exception) as info:
        call_command("check")
    assert "automate.E002" in str(info.value) and "DJANGO_AUTOMATE.CONNECTORS[0]" in str(info.value)
    with connectors(f"{HERE}.ReverseConnector"):
        call_command("check")
    assert "System check identified no issues" in capsys.readouterr().out


def test_the_worker_refuses_to_start_with_a_bad_connector(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env["AUTOMATE_TEST_WORKER_DATABASE_URL"] = "host=127.0.0.1 port=1 dbname=unused"  # never reached
    proc = subprocess.run(
        [sys.executable, "-m", "automate.aio", "--settings", "tests.connectors.bad_settings", "--drain"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "automate-aio-worker: DJANGO_AUTOMATE.CONNECTORS[0]: cannot import 'tests.connectors.nowhere.Missing'" in proc.stderr
    assert "concurrency=" not in proc.stdout  # stopped before the banner


# -- entry points -----------------------------------------------------------------------------------------


@pytest.fixture
def distributions(tmp_path: Path) -> Iterator[Any]:
    """Write installed-looking distributions (``*.dist-info`` with ``entry_points.txt``) and their modules
    into a directory on sys.path, where importlib.metadata finds them as it finds pip-installed ones."""
    created: list[str] = []

    def install(dist: str, entry_points: dict[str, str], module: str | None = None, source: str = "") -> None:
        info = tmp_path / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[automate.connectors]\n{lines}")
        if module:
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            created.append(module)

    sys.path.insert(0, str(tmp_path))
    try:
        yield install
    finally:
        sys.path.remove(str(tmp_path))
        for module in created:
            sys.modules.pop(module, None)


SHOUT = """
    class Shout:
        code = "acme.shout"
        needs_network = False
        is_llm = False

        def validate_config(self, config, *, path):
            pass

        async def run(self, config, ctx):
            return {"text": str(config.get("text", "")).upper() + "!"}

    shout = Shout()
"""


def test_entry_points_of_installed_distributions_are_loaded(distributions):
    distributions("acme-connectors", {"shout": "acme_shout:Shout", "echo": f"{HERE}:ECHO"}, "acme_shout", SHOUT)
    clear_loaded()
    assert type(get_connector("acme.shout")).__name__ == "Shout"
    assert get_connector("acme.echo") is ECHO
    assert {"acme.shout", "acme.echo"} <= set(registered_codes())


def test_an_entry_point_and_the_setting_naming_the_same_connector_are_one(distributions):
    distributions("acme-connectors", {"reverse": f"{HERE}:ReverseConnector"})
    with connectors(f"{HERE}.ReverseConnector"):
        assert isinstance(get_connector("reverse"), ReverseConnector)


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"broken": "acme_missing:Thing"},
         "entry point 'broken' of acme-bad (group 'automate.connectors'): cannot load 'acme_missing:Thing' "
         "(ModuleNotFoundError"),
        ({"nothing": f"{HERE}:Nothing"}, "entry point 'nothing' of acme-bad (group 'automate.connectors'): "
                                         f"cannot load '{HERE}:Nothing' (AttributeError"),
        ({"norun": f"{HERE}:NoRun"}, "entry point 'norun' of acme-bad (group 'automate.connectors'): "
                                     f"'{HERE}:NoRun' is not a connector: it does not implement"),
        ({"clash": f"{HERE}:Clash"}, "entry point 'clash' of acme-bad (group 'automate.connectors'): code "
                                     "'python' clashes with the built-in connector PythonConnector"),
    ],
)
def test_bad_entry_points_raise_naming_the_entry_point(distributions, targets, message):
    distributions("acme-bad", targets)
    with pytest.raises(ImproperlyConfigured) as info:
        load_connectors()
    assert message in str(info.value)


def test_an_entry_point_clashing_with_the_setting_names_both(distributions):
    distributions("acme-bad", {"other": f"{HERE}:OtherReverse"})
    with connectors(f"{HERE}.ReverseConnector"), pytest.raises(ImproperlyConfigured) as info:
        get_connector("reverse")
    assert ("entry point 'other' of acme-bad (group 'automate.connectors'): code 'reverse' is already used by "
            "DJANGO_AUTOMATE.CONNECTORS[0]") in str(info.value)


# -- the README's example, run as written -----------------------------------------------------------------


def readme_block(first_line: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Writing your own connector", 1)[1]
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"no python block starting with {first_line!r} in 'Writing your own connector'")


@pytest.fixture
def readme_module() -> Iterator[types.ModuleType]:
    code = readme_block("# myapp/connectors.py")
    assert len(code.strip().splitlines()) < 30 + 2  # under 30 lines, the comment and import lines aside
    package, module = types.ModuleType("myapp"), types.ModuleType("myapp.connectors")
    package.__path__ = []
    package.connectors = module  # type: ignore[attr-defined]
    sys.modules["myapp"], sys.modules["myapp.connectors"] = package, module
    try:
        exec(compile(code, "README.md:myapp/connectors.py", "exec"), module.__dict__)
        yield module
    finally:
        del sys.modules["myapp.connectors"], sys.modules["myapp"]


@pytest.mark.django_db(transaction=True)
def test_the_readme_connector_runs_in_a_worker(readme_module, make_config):  # noqa: F811
    settings_block = readme_block('DJANGO_AUTOMATE = {"CONNECTORS"')
    namespace: dict[str, Any] = {}
    exec(settings_block, namespace)
    with override_settings(DJANGO_AUTOMATE=namespace["DJANGO_AUTOMATE"]):
        publish("shout", trigger_spec={"event": "greet"}, steps=[
            {"id": "shout", "type": "uppercase", "config": {"text": "hello {{ event.payload.name }}"}},
        ])
        with pytest.raises(SpecError, match=re.escape("steps[0].config.volume: unknown key")):
            publish("bad", trigger_spec={"event": "greet"}, steps=[
                {"id": "shout", "type": "uppercase", "config": {"text": "x", "volume": 11}},
            ])
        publish("raw", trigger_spec={"event": "raw"}, steps=[
            {"id": "shout", "type": "uppercase", "config": {"text": "{{ event.payload.name }}"}},  # keeps the type
        ])
        emit_event("greet", {"name": "ada"})
        emit_event("raw", {"name": 7})
        drain(make_config())
    ok = ExecutionRun.objects.get(workflow_version__workflow__slug="shout")
    assert ok.status == "SUCCEEDED", ok.error
    assert ok.outputs["shout"] == {"text": "HELLO ADA", "step": "shout"}
    failed = ExecutionRun.objects.get(workflow_version__workflow__slug="raw")
    assert failed.status == "FAILED" and "config.text: must be a string" in failed.error
