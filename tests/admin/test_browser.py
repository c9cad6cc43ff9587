"""The admin in a real browser: Debian's chromium driven by Playwright against Django's live server
(StaticLiveServerTestCase: a real server thread on 127.0.0.1, the admin's CSS served).

Covered: logging in, the run detail page (step timeline; untrusted output shown as text, never run),
the retry action end to end (a real worker drain in between) and the rule tester. Screenshots are kept
in ``test-artifacts/screenshots/`` (their paths are printed). Without a browser the test is skipped and
says so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import unittest
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import override_settings

from automate.models import ExecutionRun, OutboxJob
from automate.runtime import emit_event
from automate.workflows import publish
from tests.admin.conftest import AUTOMATE, SCREENSHOTS

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def find_chromium() -> str | None:
    for candidate in (os.environ.get("AUTOMATE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


def in_thread(fn: Any) -> Any:
    """``fn()`` in a thread of its own, its connections closed after. Playwright's sync API keeps an
    event loop on the test's thread, where Django would give the ORM a connection of that loop's context
    (never closed) and asyncio.run() would refuse to start."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)
        finally:
            from django.db import connections

            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the call did not return"
    assert not errors, errors
    return out[0]


def drain_in_thread() -> None:
    """A real worker drain (until the outbox is empty)."""
    from automate.aio.config import WorkerConfig
    from tests.aio.conftest import drain
    from tests.conftest import conninfo

    cfg = WorkerConfig(conninfo=conninfo(), drain=True, poll_interval=0.2, lease_seconds=5.0, health_interval=1.0)
    in_thread(lambda: drain(cfg))


@override_settings(DJANGO_AUTOMATE=AUTOMATE, STATIC_URL="/static/")
class AdminInABrowser(StaticLiveServerTestCase):
    host = "127.0.0.1"

    def setUp(self) -> None:
        self.chromium = find_chromium()
        if self.chromium is None:
            raise unittest.SkipTest("no browser: chromium was not found on PATH (apt-get install chromium)")
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError as exc:
            raise unittest.SkipTest(f"no browser driver: playwright is not installed ({exc})") from None
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.counter = tmp = Path(tempfile.mkdtemp(prefix="automate-browser-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        get_user_model().objects.create_superuser("operator", "op@example.com", "pw-for-tests-only")
        publish("orders", trigger_spec={"event": "order.*", "rule": {">": [{"var": "event.payload.total"}, 100]}},
                steps=[
                    {"id": "fetch", "type": "python", "config": {"callable": "tests.admin.steps.untrusted"}},
                    {"id": "charge", "type": "python", "depends_on": ["fetch"], "max_retries": 0, "config": {
                        "callable": "tests.steps.flaky",
                        "kwargs": {"path": str(tmp / "count"), "failures": 1, "kind": "value"}}},
                ])
        emit_event("order.created", {"total": 120})
        drain_in_thread()
        self.run_row = ExecutionRun.objects.get()
        assert self.run_row.status == "FAILED"
        ExecutionRun.objects.filter(pk=self.run_row.pk).update(trace_id="4bf92f3577b34da6a3ce929d0e0e4736")

    def shot(self, page: Any, name: str) -> None:
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        SCREENSHOTS.append(str(path))

    def test_run_detail_retry_and_rule_tester(self) -> None:
        from playwright.sync_api import expect, sync_playwright

        base = self.live_server_url
        with sync_playwright() as p:
            profile = tempfile.mkdtemp(prefix="automate-chromium-")
            self.addCleanup(shutil.rmtree, profile, True)
            context = p.chromium.launch_persistent_context(
                profile, executable_path=self.chromium, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
            )
            try:
                page = context.new_page()
                dialogs: list[str] = []
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

                page.goto(f"{base}/admin/login/?next=/admin/")
                page.fill("#id_username", "operator")
                page.fill("#id_password", "pw-for-tests-only")
                page.click("input[type=submit]")
                expect(page.locator("#user-tools")).to_contain_text("operator")

                # The run list, searched by trace id; then the run's detail page.
                page.goto(f"{base}/admin/automate/executionrun/?q=4bf92f3577b34da6a3ce929d0e0e4736")
                expect(page.locator("#result_list tbody tr")).to_have_count(1)
                page.click(f"#result_list a[href*='{self.run_row.pk}']")
                timeline = page.locator("table.automate-timeline")
                expect(timeline).to_be_visible()
                expect(timeline.locator("tr.automate-step")).to_have_count(2)
                expect(timeline.locator("tr.automate-step-failed")).to_contain_text("bad input, will never work")
                expect(timeline.locator("tr.automate-step-succeeded pre.automate-json")).to_contain_text(
                    "<script>alert('x')</script>")  # shown as text...
                assert page.locator("table.automate-timeline script, table.automate-timeline b").count() == 0
                expect(page.locator("body")).not_to_contain_text("sk-test-0123456789abcdefghij")
                expect(page.locator("body")).to_contain_text("4bf92f3577b34da6a3ce929d0e0e4736")
                self.shot(page, "run-detail-failed")

                # The retry action from the run list.
                page.goto(f"{base}/admin/automate/executionrun/")
                page.check(f"input.action-select[value='{self.run_row.pk}']")
                page.select_option("select[name=action]", "retry_runs")
                page.click("button[name=index]")
                expect(page.locator("ul.messagelist")).to_contain_text("1 run queued again from the last completed step")
                self.shot(page, "run-retry-action")
                assert in_thread(lambda: OutboxJob.objects.filter(kind="run", status="PENDING").count()) == 1
                drain_in_thread()
                page.goto(f"{base}/admin/automate/executionrun/{self.run_row.pk}/change/")
                expect(page.locator(".field-status .readonly")).to_have_text("Succeeded")
                expect(page.locator("table.automate-timeline tr.automate-step")).to_have_count(3)
                self.shot(page, "run-detail-after-retry")

                # The rule tester, reached from the workflow list.
                page.goto(f"{base}/admin/automate/workflow/")
                page.click("a.automate-rule-tester-link")
                page.fill("#id_rule", '{"and": [{">": [{"var": "event.payload.total"}, 100]},'
                                      ' {"==": [{"var": "event.type"}, "order.paid"]}]}')
                page.fill("#id_context", '{"event": {"type": "order.created", "payload": {"total": 120}}}')
                page.click("input[name=_explain]")
                expect(page.locator(".automate-verdict")).to_contain_text("✗ The rule fails")
                expect(page.locator('li.automate-node.passed[data-path="$.and[0]"] > .automate-mark')).to_have_text("✓")
                expect(page.locator('li.automate-node.failed[data-path="$.and[1]"] > .automate-mark')).to_have_text("✗")
                self.shot(page, "rule-tester")
                page.fill("#id_rule", '{"and": [{"foo": 1}]}')
                page.click("input[name=_explain]")
                expect(page.locator(".errorlist")).to_contain_text("unknown operator 'foo' (at $.and[0].foo)")
                self.shot(page, "rule-tester-error")
                assert dialogs == [], dialogs  # no injected script ever ran
            finally:
                context.close()
