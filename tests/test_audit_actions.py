"""The Django-side audit actions: workflow.published, workflow.enabled/disabled, secret.created/updated/deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.db import transaction
from django.test import override_settings

from automate import audit
from automate.models import AuditLogEntry, Secret, Workflow, WorkflowVersion
from automate.secrets import delete_secret, resolve, set_secret
from automate.workflows import publish, set_enabled

pytestmark = pytest.mark.django_db

TRIGGER = {"event": "order.paid"}
LEAKY_VALUE = "sk-live-0123456789abcdefSECRET"


def steps(output: Any = 1) -> list[dict[str, Any]]:
    return [{"id": "t", "type": "transform", "config": {"output": output}}]


_before: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _only_this_tests_entries() -> None:
    # An entry committed by another test's thread (async tests write through sync_to_async, outside the
    # test's transaction) is not this test's business.
    _before["id"] = AuditLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def entries(action: str | None = None) -> list[AuditLogEntry]:
    qs = AuditLogEntry.objects.filter(id__gt=_before["id"]).order_by("id")
    return list(qs.filter(action=action) if action else qs)


def stored_text() -> str:
    """Every audit column of every row, as text: where a leaked value would show."""
    return repr(list(AuditLogEntry.objects.values_list("actor", "action", "resource", "details")))


def test_all_actions_written_here_are_listed_and_the_readme_lists_every_action():
    assert {"workflow.published", "workflow.enabled", "workflow.disabled", "secret.created", "secret.updated",
            "secret.deleted"} <= audit.ACTIONS
    section = (Path(__file__).resolve().parent.parent / "README.md").read_text().split("## Audit log", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert sorted(a for a in audit.ACTIONS if f"`{a}`" not in section) == []


# -- workflow.published -----------------------------------------------------------------------------------


def test_publish_audits_each_new_version_and_nothing_for_an_unchanged_spec():
    v1 = publish("orders", trigger_spec=TRIGGER, steps=steps())
    [first] = entries("workflow.published")
    assert (first.actor, first.resource) == ("system", "workflow:orders")
    assert first.details == {"workflow_id": v1.workflow_id, "version_id": v1.pk, "version_num": 1,
                             "previous_version_num": None, "changed": []}

    assert publish("orders", trigger_spec=TRIGGER, steps=steps()) == v1  # unchanged: no version, no entry
    assert len(entries("workflow.published")) == 1

    v2 = publish("orders", trigger_spec=TRIGGER, steps=steps(2), actor="user:alice")
    v3 = publish("orders", trigger_spec={"event": "order.*"}, steps=steps(2), created_by="deploy-bot")
    second, third = entries("workflow.published")[1:]
    assert (second.actor, second.details["version_id"], second.details["version_num"]) == ("user:alice", v2.pk, 2)
    assert (second.details["previous_version_num"], second.details["changed"]) == (1, ["steps"])
    assert (third.actor, third.details["version_num"], third.details["changed"]) == ("deploy-bot", 3, ["trigger_spec"])
    assert v3.created_by == "deploy-bot"


def test_publish_audit_holds_no_spec_content_and_is_redacted():
    publish("leaky", trigger_spec=TRIGGER, steps=steps({"note": f"Bearer {LEAKY_VALUE}"}))
    assert "SECRET" not in stored_text() and "Bearer" not in stored_text()


def test_a_refused_or_rolled_back_publish_writes_no_entry():
    with pytest.raises(Exception, match="steps"):
        publish("bad", trigger_spec=TRIGGER, steps=[{"id": "t", "type": "nope", "config": {}}])
    with pytest.raises(RuntimeError), transaction.atomic():
        publish("rolled", trigger_spec=TRIGGER, steps=steps())
        raise RuntimeError("the caller's transaction fails")
    assert entries() == []
    assert not WorkflowVersion.objects.filter(workflow__slug__in=["bad", "rolled"]).exists()


def test_a_bad_actor_is_refused_and_nothing_is_stored():
    with pytest.raises(ValueError, match="audit actor is longer than 200 characters"):
        publish("w", trigger_spec=TRIGGER, steps=steps(), actor="x" * 201)
    assert not WorkflowVersion.objects.filter(workflow__slug="w").exists() and entries() == []


# -- workflow.enabled / workflow.disabled -----------------------------------------------------------------


def test_set_enabled_audits_changes_only():
    publish("w", trigger_spec=TRIGGER, steps=steps())
    workflow = set_enabled("w", False, actor="user:bob")
    assert workflow.enabled is False and Workflow.objects.get(slug="w").enabled is False
    set_enabled("w", False, actor="user:bob")  # already off: nothing
    set_enabled("w", True)
    off, on = entries("workflow.disabled") + entries("workflow.enabled")
    assert (off.actor, off.resource, off.details) == ("user:bob", "workflow:w", {"workflow_id": workflow.pk, "enabled": False})
    assert (on.actor, on.details["enabled"]) == ("system", True)
    assert len(entries("workflow.disabled")) == 1 and len(entries("workflow.enabled")) == 1


def test_a_plain_save_that_flips_enabled_is_audited():
    workflow = Workflow.objects.create(slug="plain", name="plain", enabled=False)  # created: not a change
    workflow.save()  # unchanged
    workflow.name = "renamed"
    workflow.save(update_fields=["name"])
    assert entries() == []

    workflow.enabled = True
    workflow.save()
    workflow.audit_actor = "user:carol"  # an admin action names its user
    workflow.enabled = False
    workflow.save(update_fields=["enabled", "updated_at"])
    on, off = entries()
    assert (on.action, on.actor) == ("workflow.enabled", "system")
    assert (off.action, off.actor) == ("workflow.disabled", "user:carol")


def test_set_enabled_refuses_bad_input_and_stores_nothing():
    publish("w", trigger_spec=TRIGGER, steps=steps())
    with pytest.raises(Workflow.DoesNotExist):
        set_enabled("missing", False)
    with pytest.raises(TypeError, match="enabled must be a bool, not str"):
        set_enabled("w", "no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="audit actor must be a non-empty string"):
        set_enabled("w", False, actor="")
    assert Workflow.objects.get(slug="w").enabled is True  # the refused actor rolled the change back
    assert entries("workflow.disabled") == []


# -- secret.created / secret.updated / secret.deleted -----------------------------------------------------


@pytest.fixture
def db_secrets():
    with override_settings(DJANGO_AUTOMATE={"SECRETS": {"backend": "db", "encryption_key": Fernet.generate_key().decode()}}):
        yield


def test_db_secret_writes_are_audited_by_name_never_value(db_secrets):
    assert set_secret("STRIPE_KEY", LEAKY_VALUE, actor="user:dana") == "created"
    assert set_secret("STRIPE_KEY", LEAKY_VALUE) == "unchanged"  # nothing written, nothing audited
    assert set_secret("$secret:STRIPE_KEY", LEAKY_VALUE + "2") == "updated"
    assert resolve("$secret:STRIPE_KEY") == LEAKY_VALUE + "2"
    assert delete_secret("STRIPE_KEY", actor="user:erin") is True
    assert delete_secret("STRIPE_KEY") is False  # nothing to delete: no entry

    rows = [(e.action, e.actor, e.resource, e.details) for e in entries()]
    assert rows == [
        ("secret.created", "user:dana", "secret:STRIPE_KEY", {"backend": "db"}),
        ("secret.updated", "system", "secret:STRIPE_KEY", {"backend": "db"}),
        ("secret.deleted", "user:erin", "secret:STRIPE_KEY", {"backend": "db"}),
    ]
    assert "0123456789abcdef" not in stored_text()


def test_a_refused_actor_stores_no_secret(db_secrets):
    with pytest.raises(ValueError, match="audit actor"):
        set_secret("TOKEN", LEAKY_VALUE, actor="")
    assert not Secret.objects.filter(name="TOKEN").exists() and entries() == []


class MemoryBackend:
    """A custom backend that can store secrets (set/delete), and refuse to."""

    values: dict[str, str] = {}
    refuse = False

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        if self.refuse:
            raise ConnectionError("vault unreachable")
        self.values[name] = value

    def delete(self, name: str) -> bool:
        return self.values.pop(name, None) is not None


@pytest.fixture
def memory_secrets():
    MemoryBackend.values, MemoryBackend.refuse = {}, False
    with override_settings(DJANGO_AUTOMATE={"SECRETS": {"backend": "tests.test_audit_actions.MemoryBackend"}}):
        yield MemoryBackend


def test_custom_backend_writes_are_audited_and_a_refused_write_leaves_no_entry(memory_secrets):
    assert set_secret("API_KEY", LEAKY_VALUE) == "created"
    assert set_secret("API_KEY", LEAKY_VALUE) == "unchanged"
    assert set_secret("API_KEY", "other-value-123") == "updated"
    memory_secrets.refuse = True
    with pytest.raises(ConnectionError):
        set_secret("API_KEY", "third-value-456")
    assert delete_secret("API_KEY") is True
    assert [(e.action, e.details) for e in entries()] == [
        ("secret.created", {"backend": "MemoryBackend"}),
        ("secret.updated", {"backend": "MemoryBackend"}),
        ("secret.deleted", {"backend": "MemoryBackend"}),
    ]
    text = stored_text()
    assert "0123456789abcdef" not in text and "other-value" not in text and "third-value" not in text
