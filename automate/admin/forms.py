"""Admin forms: JSON text areas with errors that say where, a workflow form that publishes versions, the
secret form (write-only values) and the rule tester's form."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from automate.core.errors import AutomateError, RuleError, SpecError
from automate.core.jsonsafe import JSONValueError, check_json
from automate.models import Secret, Workflow

__all__ = ["JSONText", "RuleTesterForm", "SecretForm", "WorkflowForm", "spec_errors_by_field"]

_TEXTAREA = {"rows": 12, "cols": 90, "spellcheck": "false", "class": "vLargeTextField automate-json"}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class JSONText(forms.CharField):
    """A textarea holding JSON. A syntax error names its line and column; NaN and Infinity are refused."""

    widget = forms.Textarea(attrs=_TEXTAREA)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("strip", True)
        super().__init__(*args, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str) or value is None:
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        if text in (None, ""):
            return None
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", code="json"
            ) from None
        except ValueError as exc:
            raise ValidationError(f"not valid JSON: {exc}", code="json") from None
        try:
            check_json(data, path="$")
        except JSONValueError as exc:
            raise ValidationError(str(exc), code="json") from None
        return data


def spec_errors_by_field(exc: SpecError) -> dict[str | None, list[str]]:
    """``SpecError`` problems (``steps[1].config.callable: ...``) grouped by the form field they are about:
    ``trigger.*`` -> ``trigger_spec``, ``steps*`` -> ``steps``, anything else -> ``None`` (the form)."""
    problems = getattr(exc, "problems", None)
    pairs: list[tuple[str, str]] = list(problems) if problems else []
    if not pairs:
        text = str(exc)
        path, sep, message = text.partition(": ")
        pairs = [(path, message)] if sep and " " not in path else [("", text)]
    grouped: dict[str | None, list[str]] = {}
    for path, message in pairs:
        if path.startswith("trigger"):
            field: str | None = "trigger_spec"
        elif path.startswith("steps"):
            field = "steps"
        else:
            field = None
        grouped.setdefault(field, []).append(f"{path}: {message}" if path else message)
    return grouped


class WorkflowForm(forms.ModelForm):
    """A workflow and the spec of its next version. Saving publishes the spec through
    ``automate.workflows.publish()`` (the admin's ``save_model``); an unchanged spec adds no version."""

    trigger_spec = JSONText(
        label="Trigger", help_text='e.g. {"event": "order.*", "rule": {">": [{"var": "event.payload.total"}, 100]}}'
    )
    steps = JSONText(label="Steps", help_text="a list of steps; see the README's 'Workflow format'")

    class Meta:
        model = Workflow
        fields = ["slug", "name", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            current = self.instance.versions.order_by("-version_num").first()
            if current is not None:
                self.initial.setdefault("trigger_spec", current.trigger_spec)
                self.initial.setdefault("steps", current.steps)
            if "slug" in self.fields:
                self.fields["slug"].disabled = True  # runs and logs name it: it does not change

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        trigger, steps = data.get("trigger_spec"), data.get("steps")
        if trigger is None or steps is None:
            return data  # the field errors already say what is missing
        from automate.workflows import validate_version

        try:
            validate_version(trigger, steps)
        except SpecError as exc:
            for field, messages in spec_errors_by_field(exc).items():
                for message in messages:
                    self.add_error(field, message)
        return data


class SecretForm(forms.ModelForm):
    """A secret's name and a new value. The value is never shown (not even its length); saving stores
    it through ``automate.secrets.set_secret`` (the admin's ``save_model``)."""

    value = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        strip=False,
        help_text="The new value. The current one is never displayed.",
    )

    class Meta:
        model = Secret
        fields = ["name"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["name"].disabled = True

    def clean_name(self) -> str:
        from automate.secrets import parse_ref

        name = self.cleaned_data["name"]
        try:
            return parse_ref(name)
        except (TypeError, ValueError) as exc:
            raise ValidationError(str(exc), code="name") from None

    def validate_unique(self) -> None:
        if self.instance.pk is None:
            super().validate_unique()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        from automate.secret_backends import get_backend

        backend = get_backend()
        if not callable(getattr(backend, "set", None)):
            raise ValidationError(
                f"DJANGO_AUTOMATE.SECRETS.backend ({type(backend).__qualname__}) cannot store secrets: use 'db' "
                "(or a custom backend with set(name, value) and delete(name) methods)", code="backend")
        return data


class RuleTesterForm(forms.Form):
    rule = JSONText(help_text='A JSONLogic rule, e.g. {">": [{"var": "event.payload.total"}, 100]}')
    context = JSONText(
        required=False,
        help_text='The data the rule sees, e.g. {"event": {"type": "order.created", "payload": {"total": 120}}}',
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "rule" not in data or self.errors:
            return data
        from automate.rules import explain

        try:
            data["explanation"] = explain(data["rule"], data.get("context"))
        except RuleError as exc:
            self.add_error("rule", f"{exc.reason} (at {exc.path})")
        except (AutomateError, TypeError, ValueError) as exc:
            self.add_error("rule", f"{type(exc).__name__}: {exc}")
        return data
