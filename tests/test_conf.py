"""Every settings key: its default, a valid override, a wrong type and an out-of-range value."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from automate.conf import get_settings, validate_settings

# (section or None, key, reference default, valid override, wrong type, out of range / not allowed)
KEYS = [
    (None, "ENABLED", True, False, "yes", None),
    (None, "WORKER_MODE", "thread", "process", 3, "fast"),
    (None, "LOGGING_SCHEMA", "ecs", "simple", True, "json"),
    (None, "METRICS_EXPORT", False, True, "true", None),
    ("EXECUTION", "timeout_seconds", 60, 5, "60", -1),
    ("EXECUTION", "max_retries", 3, 0, 2.5, -1),
    ("EXECUTION", "batch_size", 10, 500, "10", 0),
    ("EXECUTION", "lease_seconds", 30, 5, "30", 0),
    ("EXECUTION", "poll_interval", 5.0, 0.5, "5", 0),
    ("EXECUTION", "shutdown_grace_seconds", 30.0, 1, "30", -1),
    ("POLICY", "allow_ssrf", False, True, "no", None),
    ("POLICY", "connector_allowlist", ("*",), ["http", "slack"], "http", None),
    ("POLICY", "llm_budget_daily", 10.00, 2.5, "10", -0.01),
    ("SECRETS", "backend", "env", "db", 1, ""),
    ("SECRETS", "prefix", "AUTOMATE_", "APP_", 5, None),
    ("EVENTS", "max_payload_bytes", 1_048_576, 2048, "1MB", 0),
    ("EVENTS", "notify", "commit", "off", True, "sometimes"),
    ("EVENTS", "prepared_statements", True, False, "yes", None),
    ("EXECUTION", "park_after_seconds", 10.0, 1, "10", -1),
    ("EXECUTION", "sync_threads", 32, 4, 4.5, 0),
    ("POLICY", "python_allowlist", (), ["app.tasks.*"], "app.*", None),
    ("SECRETS", "redact_keys", (), ["pin"], "pin", None),
    ("SECRETS", "redact_patterns", (), ["x-[0-9]+"], "x", None),
]


def _raw(section, key, value):
    return {key: value} if section is None else {section: {key: value}}


def _read(settings_obj, section, key):
    return getattr(settings_obj if section is None else getattr(settings_obj, section), key)


def _dotted(section, key):
    return f"DJANGO_AUTOMATE.{key}" if section is None else f"DJANGO_AUTOMATE.{section}.{key}"


@pytest.mark.parametrize(("section", "key", "default", "_ok", "_wt", "_oor"), KEYS)
def test_default(section, key, default, _ok, _wt, _oor):
    assert _read(validate_settings({}), section, key) == default


@pytest.mark.parametrize(("section", "key", "_d", "override", "_wt", "_oor"), KEYS)
def test_valid_override(section, key, _d, override, _wt, _oor):
    value = _read(validate_settings(_raw(section, key, override)), section, key)
    assert value == (tuple(override) if isinstance(override, list) else override)


@pytest.mark.parametrize(("section", "key", "_d", "_ok", "wrong", "_oor"), KEYS)
def test_wrong_type_names_key_and_value(section, key, _d, _ok, wrong, _oor):
    with pytest.raises(ImproperlyConfigured) as err:
        validate_settings(_raw(section, key, wrong))
    message = str(err.value)
    assert _dotted(section, key) in message
    assert repr(wrong) in message


@pytest.mark.parametrize(
    ("section", "key", "bad"), [(s, k, oor) for s, k, _d, _o, _w, oor in KEYS if oor is not None]
)
def test_out_of_range_names_key_and_value(section, key, bad):
    with pytest.raises(ImproperlyConfigured) as err:
        validate_settings(_raw(section, key, bad))
    assert _dotted(section, key) in str(err.value)
    assert repr(bad) in str(err.value)


def test_worker_mode_error_lists_allowed_values():
    with pytest.raises(ImproperlyConfigured, match="'thread', 'process' or 'synchronous'"):
        validate_settings({"WORKER_MODE": "fast"})


@pytest.mark.parametrize(
    ("raw", "dotted", "hint"),
    [
        ({"EXECUTON": {}}, "DJANGO_AUTOMATE.EXECUTON", "Did you mean 'EXECUTION'?"),
        ({"EXECUTION": {"timeout_secs": 5}}, "DJANGO_AUTOMATE.EXECUTION.timeout_secs", "'timeout_seconds'"),
        ({"POLICY": {"alow_ssrf": True}}, "DJANGO_AUTOMATE.POLICY.alow_ssrf", "'allow_ssrf'"),
    ],
)
def test_unknown_key_suggests_the_close_one(raw, dotted, hint):
    with pytest.raises(ImproperlyConfigured) as err:
        validate_settings(raw)
    assert dotted in str(err.value) and "unknown key" in str(err.value) and hint in str(err.value)


def test_unknown_key_without_a_close_match_lists_known_keys():
    with pytest.raises(ImproperlyConfigured, match="unknown key. Known keys here: ENABLED"):
        validate_settings({"ZZZZ": 1})


def test_every_problem_is_reported_at_once():
    with pytest.raises(ImproperlyConfigured) as err:
        validate_settings({"WORKER_MODE": "fast", "EXECUTION": {"batch_size": 0}})
    assert "WORKER_MODE" in str(err.value) and "EXECUTION.batch_size" in str(err.value)


def test_not_a_dict():
    with pytest.raises(ImproperlyConfigured, match="DJANGO_AUTOMATE must be a dict"):
        validate_settings(["ENABLED"])


def test_settings_are_frozen():
    s = validate_settings({})
    with pytest.raises(ValueError, match="frozen"):
        s.ENABLED = False  # type: ignore[misc]


def test_get_settings_follows_override_settings():
    assert get_settings().EXECUTION.batch_size == 10
    with override_settings(DJANGO_AUTOMATE={"EXECUTION": {"batch_size": 77}}):
        assert get_settings().EXECUTION.batch_size == 77
    assert get_settings().EXECUTION.batch_size == 10


def test_get_settings_raises_for_bad_override():
    with override_settings(DJANGO_AUTOMATE={"EXECUTION": {"timeout_seconds": -5}}):
        with pytest.raises(ImproperlyConfigured, match="DJANGO_AUTOMATE.EXECUTION.timeout_seconds"):
            get_settings()


def test_system_check_reports_the_same_error():
    with override_settings(DJANGO_AUTOMATE={"WORKER_MODE": "fast"}):
        with pytest.raises(SystemCheckError) as err:
            call_command("check")
    assert "automate.E001" in str(err.value) and "DJANGO_AUTOMATE.WORKER_MODE" in str(err.value)


def test_system_check_passes_on_good_settings():
    out = io.StringIO()
    call_command("check", stdout=out)  # raises SystemCheckError on any error
    assert out.getvalue().strip() == "System check identified no issues (0 silenced)."


def test_a_bad_encryption_key_value_is_never_echoed():
    with pytest.raises(ImproperlyConfigured) as err:
        validate_settings({"SECRETS": {"encryption_key": b"super-secret-key-bytes"}})
    assert "DJANGO_AUTOMATE.SECRETS.encryption_key" in str(err.value)
    assert "super-secret" not in str(err.value)


def test_connector_webhook_and_retention_sections():
    s = validate_settings({
        "HTTP": {"max_redirects": 2, "max_response_bytes": 1000},
        "LLM": {"base_url": "$secret:LLM_URL", "api_key": "$secret:LLM_KEY",
                "prices": {"gpt-4o-mini": {"input_per_1k": 0.00015, "output_per_1k": 0.0006}}},
        "CONNECTORS": ["shop.connectors.Crm"],
        "POLICY": {"ssrf_allowlist": ["api.partner.example", "*.internal.example", "10.1.0.0/16"]},
        "WEBHOOKS": {"sources": {"shop": {"secret": "$secret:SHOP_WEBHOOK", "event_type": "shop.webhook"}}},
        "RETENTION": {"audit_log_days": 365},
    })
    assert (s.HTTP.max_redirects, s.HTTP.timeout_seconds) == (2, 10.0)
    assert s.LLM.prices["gpt-4o-mini"].output_per_1k == 0.0006
    assert s.CONNECTORS == ("shop.connectors.Crm",)
    assert s.POLICY.ssrf_allowlist == ("api.partner.example", "*.internal.example", "10.1.0.0/16")
    assert s.WEBHOOKS.sources["shop"].event_type == "shop.webhook" and s.WEBHOOKS.replay_window_seconds == 300
    assert s.RETENTION.audit_log_days == 365


@pytest.mark.parametrize(
    ("raw", "dotted"),
    [
        ({"HTTP": {"max_redirects": -1}}, "DJANGO_AUTOMATE.HTTP.max_redirects"),
        ({"LLM": {"prices": {"m": {"input_per_1k": float("nan"), "output_per_1k": 0}}}},
         "DJANGO_AUTOMATE.LLM.prices.m.input_per_1k"),
        ({"LLM": {"prices": {"m": {"input_per_1k": 0.1}}}}, "DJANGO_AUTOMATE.LLM.prices.m.output_per_1k"),
        ({"WEBHOOKS": {"sources": {"shop": {"secret": "", "event_type": "x"}}}},
         "DJANGO_AUTOMATE.WEBHOOKS.sources.shop.secret"),
        ({"CONNECTORS": "shop.Crm"}, "DJANGO_AUTOMATE.CONNECTORS"),
        ({"POLICY": {"llm_budget_daily": float("inf")}}, "DJANGO_AUTOMATE.POLICY.llm_budget_daily"),
    ],
)
def test_new_sections_name_the_bad_key(raw, dotted):
    with pytest.raises(ImproperlyConfigured, match=dotted.replace(".", r"\.")):
        validate_settings(raw)


def test_a_misplaced_api_key_is_not_echoed():
    with pytest.raises(ImproperlyConfigured) as info:
        validate_settings({"LLM": {"api_key": ["sk-live-abcdef0123456789"]}})
    assert "sk-live" not in str(info.value) and "DJANGO_AUTOMATE.LLM.api_key" in str(info.value)
    assert "(list)" in str(info.value)


def test_http_ca_bundle_is_a_path_or_none():
    assert validate_settings({}).HTTP.ca_bundle is None
    assert validate_settings({"HTTP": {"ca_bundle": "certs/internal-ca.pem"}}).HTTP.ca_bundle == "certs/internal-ca.pem"
    for bad in ("", 1, ["a.pem"]):
        with pytest.raises(ImproperlyConfigured, match=r"DJANGO_AUTOMATE\.HTTP\.ca_bundle"):
            validate_settings({"HTTP": {"ca_bundle": bad}})
