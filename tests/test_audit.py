"""automate.audit: append-only entries whose details are redacted before they are written."""

from __future__ import annotations

import pytest

from automate import audit
from automate.core.errors import ImmutableRecordError
from automate.models import AuditLogEntry

pytestmark = pytest.mark.django_db


def test_record_redacts_details_before_writing():
    entry = audit.record("user:alice", "secret.created", "secret:CRM_TOKEN",
                         {"api_key": "sk-live-0123456789abcdef", "note": "Bearer abcdef0123456789xyz", "n": 3})
    stored = AuditLogEntry.objects.get(pk=entry.pk)
    assert (stored.actor, stored.action, stored.resource) == ("user:alice", "secret.created", "secret:CRM_TOKEN")
    assert "sk-live" not in str(stored.details) and "abcdef0123456789xyz" not in str(stored.details)
    assert stored.details["n"] == 3


def test_entries_are_immutable():
    entry = audit.record("system", "workflow.published", "workflow:w")
    entry.action = "workflow.disabled"
    with pytest.raises(ImmutableRecordError):
        entry.save()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "a.b", "r"), "audit actor must be a non-empty string"),
        (("x", "", "r"), "audit action must be a non-empty string"),
        (("x", "a.b", "r" * 301), "audit resource is longer than 300 characters"),
        (("x", "a.b", "r", ["not", "a", "dict"]), "audit details must be a dict, got list"),
    ],
)
def test_bad_entries_are_refused_and_nothing_is_stored(args, message):
    with pytest.raises(ValueError, match=message):
        audit.record(*args)
    assert not AuditLogEntry.objects.exists()


@pytest.mark.django_db(transaction=True)  # arecord runs in another thread's connection: commit, then flush
async def test_arecord(async_db_cleanup):
    from asgiref.sync import sync_to_async

    await audit.arecord("system", "workflow.enabled", "workflow:w", {"enabled": True})
    assert await sync_to_async(AuditLogEntry.objects.filter(action="workflow.enabled").count)() == 1
