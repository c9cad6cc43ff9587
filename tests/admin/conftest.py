from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from automate.models import ExecutionRun
from tests.aio.conftest import make_config  # noqa: F401  (the worker fixture, for drains)

AUTOMATE = {"POLICY": {"python_allowlist": ["tests.steps.*", "tests.admin.steps.*"]}}


@pytest.fixture(autouse=True)
def _allow_admin_steps() -> Iterator[None]:
    with override_settings(DJANGO_AUTOMATE=AUTOMATE):
        yield


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    return tmp_path / "marks.txt"


def calls(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def only_run() -> ExecutionRun:
    runs = list(ExecutionRun.objects.all())
    assert len(runs) == 1, runs
    return runs[0]


def action(client: Any, model: str, name: str, pks: list[Any]) -> Any:
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    url = f"/admin/automate/{model}/"
    return client.post(url, {"action": name, ACTION_CHECKBOX_NAME: [str(p) for p in pks]}, follow=True)


def said(response: Any) -> str:
    """The admin messages a response carries (as the views wrote them, before the template's capfirst)."""
    return "\n".join(str(m) for m in response.context["messages"])


SCREENSHOTS: list[str] = []  # paths the browser test saved, listed at the end of the run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SCREENSHOTS:
        terminalreporter.write_sep("-", "admin browser test: screenshots")
        for path in SCREENSHOTS:
            terminalreporter.write_line(path)
