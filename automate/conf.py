"""Validated configuration: ``settings.DJANGO_AUTOMATE``.

The whole dict is validated once, by a frozen pydantic model, and cached until Django sends
``setting_changed`` (so ``override_settings`` works in tests). Every problem is raised as
``ImproperlyConfigured`` naming the dotted key (``DJANGO_AUTOMATE.EXECUTION.timeout_seconds``), the bad
value and what was expected. Later features add their keys here, in the same way.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any, Literal

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["SETTINGS_NAME", "AutomateSettings", "get_settings", "validate_settings"]

SETTINGS_NAME = "DJANGO_AUTOMATE"
_SECRET_KEYS = frozenset({"encryption_key", "api_key", "secret", "METRICS_TOKEN"})


class _Section(BaseModel):
    # strict: "60" is not an int and 1 is not a bool; a settings file should say what it means.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ExecutionSettings(_Section):
    timeout_seconds: int = Field(60, gt=0, le=86_400, description="Max duration of one step execution.")
    max_retries: int = Field(3, ge=0, le=100, description="Default retry count for transient failures.")
    batch_size: int = Field(10, ge=1, le=10_000, description="Jobs the worker claims at once.")
    lease_seconds: int = Field(30, ge=1, le=86_400, description="How long a claim holds before recovery.")
    poll_interval: float = Field(5.0, gt=0, le=3_600, description="Fallback poll when no NOTIFY arrives.")
    shutdown_grace_seconds: float = Field(30.0, ge=0, le=3_600, description="Drain time on SIGTERM.")
    park_after_seconds: float = Field(
        10.0, ge=0, le=86_400, description="Retry waits longer than this are parked in the database."
    )
    sync_threads: int = Field(32, ge=1, le=1_024, description="Threads for sync user code (python steps).")
    max_output_bytes: int = Field(
        1_048_576, ge=1_024, le=256 * 1_048_576, description="Largest step output stored (JSON bytes)."
    )


class PolicySettings(_Section):
    allow_ssrf: bool = False
    connector_allowlist: tuple[str, ...] = ("*",)
    llm_budget_daily: float = Field(10.00, ge=0, allow_inf_nan=False)
    python_allowlist: tuple[str, ...] = ()
    # Hosts the SSRF guard lets through: exact host names, "*.suffix", or CIDRs ("10.1.0.0/16").
    ssrf_allowlist: tuple[str, ...] = ()

    @field_validator("connector_allowlist", "python_allowlist", "ssrf_allowlist", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


class SecretsSettings(_Section):
    backend: str = Field("env", min_length=1)
    prefix: str = "AUTOMATE_"
    encryption_key: str | None = None
    redact_keys: tuple[str, ...] = ()
    redact_patterns: tuple[str, ...] = ()

    @field_validator("redact_keys", "redact_patterns", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


class EventsSettings(_Section):
    max_payload_bytes: int = Field(1_048_576, ge=1, description="Largest JSON-encoded event payload.")
    # "commit": NOTIFY after the commit (default); "trigger": a database trigger notifies (see
    # manage.py automate_notify_trigger), emit_event does not; "off": the workers' fallback poll only.
    notify: Literal["commit", "trigger", "off"] = "commit"
    # Prepare the emit statement on the server. Turn off behind PgBouncer transaction pooling older than
    # 1.21, which cannot route prepared statements.
    prepared_statements: bool = True


class HttpSettings(_Section):
    """The ``http`` and ``slack`` connectors' shared client."""

    timeout_seconds: float = Field(10.0, gt=0, le=3_600, allow_inf_nan=False)
    max_response_bytes: int = Field(10 * 1_048_576, ge=1, le=1_073_741_824)
    max_redirects: int = Field(5, ge=0, le=50)
    max_connections: int = Field(100, ge=1, le=10_000)
    max_keepalive_connections: int = Field(20, ge=0, le=10_000)
    user_agent: str = "django-automate"
    # A PEM file of extra CA certificates to trust (besides certifi's), e.g. an internal CA; None: certifi only.
    ca_bundle: str | None = Field(None, min_length=1)


class LlmPrice(_Section):
    input_per_1k: float = Field(ge=0, allow_inf_nan=False)
    output_per_1k: float = Field(ge=0, allow_inf_nan=False)


class LlmSettings(_Section):
    """The ``llm`` connector: any OpenAI-compatible ``/chat/completions`` endpoint."""

    base_url: str = "https://api.openai.com/v1"  # may be a "$secret:NAME" reference
    api_key: str = ""  # usually "$secret:OPENAI_API_KEY"
    prices: dict[str, LlmPrice] = Field(default_factory=dict)  # USD per 1k tokens, by model
    timeout_seconds: float = Field(60.0, gt=0, le=3_600, allow_inf_nan=False)


class WebhookSource(_Section):
    secret: str = Field(min_length=1)  # "$secret:NAME"
    event_type: str = Field(min_length=1)


class WebhooksSettings(_Section):
    sources: dict[str, WebhookSource] = Field(default_factory=dict)
    replay_window_seconds: int = Field(300, ge=1, le=86_400)
    max_body_bytes: int = Field(1_048_576, ge=1, le=104_857_600)


class RetentionSettings(_Section):
    audit_log_days: int | None = Field(None, ge=1)  # None: the audit log is kept for ever


class AutomateSettings(_Section):
    ENABLED: bool = True
    WORKER_MODE: Literal["thread", "process", "synchronous"] = "thread"
    LOGGING_SCHEMA: Literal["ecs", "simple"] = "ecs"
    METRICS_EXPORT: bool = False
    EXECUTION: ExecutionSettings = ExecutionSettings()
    POLICY: PolicySettings = PolicySettings()
    SECRETS: SecretsSettings = SecretsSettings()
    EVENTS: EventsSettings = EventsSettings()
    HTTP: HttpSettings = HttpSettings()
    LLM: LlmSettings = LlmSettings()
    CONNECTORS: tuple[str, ...] = ()  # dotted paths of third-party connectors (classes or instances)
    WEBHOOKS: WebhooksSettings = WebhooksSettings()
    RETENTION: RetentionSettings = RetentionSettings()
    METRICS_TOKEN: str = ""  # a bearer token that may read the Django /metrics view (besides staff)

    @field_validator("CONNECTORS", mode="before")
    @classmethod
    def _connectors_list(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


def _known_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    model: type[BaseModel] = AutomateSettings
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            break
    return model


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    key = ".".join([SETTINGS_NAME, *map(str, loc)])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = _known_keys(parent)
        hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        return f"{key}: unknown key.{did_you_mean} Known keys here: {', '.join(known)}."
    value = error.get("input")
    type_name = type(value).__name__
    if any(str(part) in _SECRET_KEYS for part in loc):
        value = "<hidden>"  # a misplaced secret must not reach an error message or a log
    msg = str(error["msg"]).replace("a valid tuple", "a list").replace("Input should", "expected a value that should")
    return f"{key}: got {value!r} ({type_name}); {msg}."


def validate_settings(raw: Any) -> AutomateSettings:
    """Validate a ``DJANGO_AUTOMATE`` dict; raise ``ImproperlyConfigured`` naming every bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(f"{SETTINGS_NAME} must be a dict, got {type(raw).__name__}.")
    try:
        return AutomateSettings.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(dict(e)) for e in exc.errors()]
        raise ImproperlyConfigured("; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> AutomateSettings:
    """The validated settings, cached until ``DJANGO_AUTOMATE`` changes."""
    return validate_settings(getattr(django_settings, SETTINGS_NAME, None))


@receiver(setting_changed)
def _reset(*, setting: str, **_: Any) -> None:
    if setting == SETTINGS_NAME:
        get_settings.cache_clear()
