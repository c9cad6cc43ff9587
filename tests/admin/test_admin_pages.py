"""The admin's pages on a real database: registration, read-only records, secrets, the workflow form that
publishes versions, the run detail page and the rule tester."""

from __future__ import annotations

import html

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.contrib import admin
from django.test import override_settings

from automate.models import AuditLogEntry, Event, ExecutionRun, Secret, Workflow, WorkflowVersion
from automate.runtime import emit_event
from automate.workflows import publish
from tests.admin.conftest import AUTOMATE, only_run
from tests.aio.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = [{"id": "t", "type": "transform", "config": {"output": {"n": "{{ event.payload.n }}"}}}]


def test_every_model_is_registered_and_its_pages_load(admin_client):
    publish("w", trigger_spec={"event": "x"}, steps=STEPS)
    emit_event("x", {"n": 1})
    for model in apps.get_app_config("automate").get_models():
        assert admin.site.is_registered(model), model
        opts = model._meta
        url = f"/admin/{opts.app_label}/{opts.model_name}/"
        response = admin_client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        if admin.site._registry[model].search_fields:
            assert admin_client.get(url, {"q": "x"}).status_code == 200, url


def test_runs_are_searched_by_status_workflow_trace_id_and_event_type(admin_client, make_config):
    publish("alpha", trigger_spec={"event": "order.*"}, steps=STEPS)
    publish("beta", trigger_spec={"event": "user.*"}, steps=[{"id": "f", "type": "python",
                                                             "config": {"callable": "tests.steps.fail_permanently"}}])
    emit_event("order.created", {"n": 1})
    emit_event("user.joined", {"n": 2})
    drain(make_config())
    ok = ExecutionRun.objects.get(workflow_version__workflow__slug="alpha")
    bad = ExecutionRun.objects.get(workflow_version__workflow__slug="beta")
    ExecutionRun.objects.filter(pk=ok.pk).update(trace_id="0af7651916cd43dd8448eb211c80319c")

    def found(q: str) -> set[str]:
        response = admin_client.get("/admin/automate/executionrun/", {"q": q})
        assert response.status_code == 200
        return {str(r.pk) for r in response.context["cl"].result_list}

    assert found("FAILED") == {str(bad.pk)}
    assert found("alpha") == {str(ok.pk)}
    assert found("0af7651916cd43dd8448eb211c80319c") == {str(ok.pk)}
    assert found("user.joined") == {str(bad.pk)}
    assert found(str(bad.pk)) == {str(bad.pk)}
    filtered = admin_client.get("/admin/automate/executionrun/", {"status__exact": "SUCCEEDED"})
    assert {str(r.pk) for r in filtered.context["cl"].result_list} == {str(ok.pk)}


@pytest.mark.parametrize("model", [Event, WorkflowVersion, AuditLogEntry])
def test_immutable_records_cannot_be_added_changed_or_deleted(admin_client, model):
    publish("w", trigger_spec={"event": "x"}, steps=STEPS)  # a version and an audit entry
    emit_event("x", {"n": 1})
    obj = model.objects.first()
    name = model._meta.model_name
    base = f"/admin/automate/{name}/"
    model_admin = admin.site._registry[model]
    request = admin_client.get(base).wsgi_request
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, obj)
    assert not model_admin.has_delete_permission(request, obj)
    assert admin_client.get(f"{base}add/").status_code == 403
    assert admin_client.get(f"{base}{obj.pk}/change/").status_code == 200  # view only
    assert admin_client.post(f"{base}{obj.pk}/change/", {}).status_code == 403
    assert admin_client.post(f"{base}{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_secrets_are_set_through_set_secret_and_never_displayed(admin_client):
    # The default env backend cannot store: a form error says so, and nothing is stored.
    refused = admin_client.post("/admin/automate/secret/add/", {"name": "CRM_TOKEN", "value": "v"})
    assert "EnvSecretBackend) cannot store secrets: use &#x27;db&#x27;" in refused.content.decode()
    assert not Secret.objects.exists()
    key = Fernet.generate_key().decode()
    conf = {**AUTOMATE, "SECRETS": {"backend": "db", "encryption_key": key}}
    with override_settings(DJANGO_AUTOMATE=conf):
        from automate.secrets import resolve

        first, second = "hunter2-first-value", "correct-horse-battery"
        response = admin_client.post("/admin/automate/secret/add/", {"name": "CRM_TOKEN", "value": first}, follow=True)
        assert response.status_code == 200
        secret = Secret.objects.get(name="CRM_TOKEN")
        assert resolve("$secret:CRM_TOKEN") == first
        page = admin_client.get(f"/admin/automate/secret/{secret.pk}/change/").content.decode()
        listing = admin_client.get("/admin/automate/secret/").content.decode()
        for text in (page, listing):
            assert first not in text and secret.ciphertext not in text
        assert 'type="password"' in page
        admin_client.post(f"/admin/automate/secret/{secret.pk}/change/", {"name": "CRM_TOKEN", "value": second})
        assert resolve("$secret:CRM_TOKEN") == second
        actions = list(AuditLogEntry.objects.filter(resource="secret:CRM_TOKEN").values_list("actor", "action"))
        assert actions == [("user:admin", "secret.created"), ("user:admin", "secret.updated")]
        assert first not in str(list(AuditLogEntry.objects.values_list("details", flat=True)))
        # A bad name is a form error naming the rule, and stores nothing.
        bad = admin_client.post("/admin/automate/secret/add/", {"name": "not a name", "value": "v"})
        assert bad.status_code == 200 and "malformed secret reference" in bad.content.decode()
        assert Secret.objects.count() == 1
        admin_client.post(f"/admin/automate/secret/{secret.pk}/delete/", {"post": "yes"})
        assert not Secret.objects.exists()
        assert AuditLogEntry.objects.filter(action="secret.deleted", actor="user:admin").exists()


def test_the_workflow_form_publishes_versions_and_shows_spec_errors_at_their_path(admin_client):
    trigger = '{"event": "order.*"}'
    steps = '[{"id": "a", "type": "transform", "config": {"output": 1}}]'
    response = admin_client.post("/admin/automate/workflow/add/", {
        "slug": "orders", "name": "Orders", "enabled": "on", "trigger_spec": trigger, "steps": steps,
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    workflow = Workflow.objects.get(slug="orders")
    assert list(workflow.versions.values_list("version_num", "created_by")) == [(1, "admin")]
    assert AuditLogEntry.objects.get(action="workflow.published").actor == "user:admin"
    url = f"/admin/automate/workflow/{workflow.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert html.escape('"order.*"', quote=True) in page or "order.*" in page  # the current spec, prefilled

    bad_steps = ('[{"id": "a", "type": "transform", "config": {"output": 1}},'
                 ' {"id": "b", "type": "python", "config": {"callable": "os.system"}}]')
    response = admin_client.post(url, {"name": "Orders", "enabled": "on", "trigger_spec": trigger, "steps": bad_steps})
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert any(m.startswith("steps[1].config.callable: ") for m in form.errors["steps"]), form.errors
    assert "trigger_spec" not in form.errors

    response = admin_client.post(url, {"name": "Orders", "enabled": "on",
                                       "trigger_spec": '{"event": "x", "rule": {"and": [{"foo": 1}]}}', "steps": steps})
    errors = response.context["adminform"].form.errors
    assert errors["trigger_spec"] == ["trigger.rule.and[0].foo: unknown operator 'foo'"], errors

    response = admin_client.post(url, {"name": "Orders", "enabled": "on", "trigger_spec": '{"event": ', "steps": steps})
    errors = response.context["adminform"].form.errors
    assert errors["trigger_spec"][0].startswith("not valid JSON: Expecting value at line 1, column 10"), errors
    response = admin_client.post(url, {"name": "Orders", "enabled": "on", "trigger_spec": '{"event": "x", "n": NaN}',
                                       "steps": steps})
    assert "NaN is not a JSON number" in str(response.context["adminform"].form.errors["trigger_spec"])
    assert workflow.versions.count() == 1  # nothing bad was stored

    response = admin_client.post(url, {"name": "Orders", "trigger_spec": '{"event": "order.paid"}', "steps": steps})
    assert response.status_code == 302
    assert list(workflow.versions.order_by("version_num").values_list("version_num", flat=True)) == [1, 2]
    workflow.refresh_from_db()
    assert workflow.enabled is False
    assert AuditLogEntry.objects.get(action="workflow.disabled").actor == "user:admin"
    # Saving again unchanged publishes nothing.
    admin_client.post(url, {"name": "Orders", "trigger_spec": '{"event": "order.paid"}', "steps": steps})
    assert workflow.versions.count() == 2


def test_run_detail_shows_the_timeline_escaped_and_redacted(admin_client, make_config):
    publish("leaky", trigger_spec={"event": "x"}, steps=[
        {"id": "first", "type": "python", "config": {"callable": "tests.admin.steps.untrusted"}},
        {"id": "second", "type": "python", "depends_on": ["first"],
         "config": {"callable": "tests.steps.fail_permanently", "kwargs": {"message": "<img src=x onerror=alert(1)>"}}},
    ])
    emit_event("x", {"n": 1})
    drain(make_config())
    run = only_run()
    ExecutionRun.objects.filter(pk=run.pk).update(trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
    page = admin_client.get(f"/admin/automate/executionrun/{run.pk}/change/").content.decode()
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in page
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "sk-test-0123456789abcdefghij" not in page
    assert 'class="automate-timeline"' in page
    assert 'automate-step-succeeded' in page and 'automate-step-failed' in page
    assert " ms</td>" in page  # durations
    assert "Save" not in page.split('id="executionrun_form"')[1].split("</form>")[0].replace("Save as", "")


def test_rule_tester_marks_passing_and_failing_nodes(admin_client):
    workflow = publish("w", trigger_spec={"event": "x", "rule": {">": [{"var": "event.payload.total"}, 100]}},
                       steps=STEPS).workflow
    listing = admin_client.get("/admin/automate/workflow/").content.decode()
    assert "/admin/automate/workflow/rule-tester/" in listing
    url = "/admin/automate/workflow/rule-tester/"
    prefilled = admin_client.get(url, {"workflow": workflow.pk}).content.decode()
    assert "event.payload.total" in prefilled

    rule = '{"and": [{">": [{"var": "event.payload.total"}, 100]}, {"==": [{"var": "event.type"}, "order.paid"]}]}'
    context = '{"event": {"type": "order.created", "payload": {"total": 120}}}'
    page = admin_client.post(url, {"rule": rule, "context": context}).content.decode()
    assert "✗ The rule fails" in page
    assert 'class="automate-node passed" data-path="$.and[0]"' in page
    assert 'class="automate-node failed" data-path="$.and[1]"' in page
    assert "✓" in page and "✗" in page

    page = admin_client.post(url, {"rule": '{"or": [true, {"var": "x"}]}', "context": "{}"}).content.decode()
    assert "✓ The rule passes" in page and 'class="automate-node skipped" data-path="$.or[1]"' in page

    page = admin_client.post(url, {"rule": '{"and": [{"foo": 1}]}', "context": "{}"}).content.decode()
    assert "unknown operator &#x27;foo&#x27; (at $.and[0].foo)" in page
    page = admin_client.post(url, {"rule": '{"==": [1, 1]}', "context": '{"a": [1,'}).content.decode()
    assert "not valid JSON: Expecting value at line 1, column 10" in page
    page = admin_client.post(url, {"rule": '{"==": ["<b>", "<b>"]}', "context": "{}"}).content.decode()
    assert "&quot;&lt;b&gt;&quot;" in page and '"<b>"' not in page
