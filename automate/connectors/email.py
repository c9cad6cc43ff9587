"""The ``email`` step type: one message through Django's configured email backend.

    {"type": "email", "config": {
        "to": ["{{ event.payload.customer.email }}"], "subject": "Order {{ event.payload.id }} shipped",
        "body": "Hello ...", "html": "<p>Hello ...</p>",
        "from": "Shop <shop@example.com>", "cc": [...], "bcc": [...], "reply_to": [...]}}

Output: ``{"sent": 1, "to": [...], "message_id": "<...>"}``. The message is built and sent in a thread
(``run_sync_bounded``, sharing ``EXECUTION.sync_threads`` with python steps), never on the event loop.
Connection failures, timeouts and 4xx replies are transient (retried); 5xx replies (a refused recipient,
refused data, failed authentication) are permanent.
"""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from email.utils import getaddresses
from functools import partial
from typing import Any, ClassVar

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection, make_msgid
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.core.mail.utils import DNS_NAME
from django.core.validators import validate_email
from django.utils.module_loading import import_string

from automate.conf import get_settings
from automate.core.errors import SpecError

from .base import PermanentStepError, StepContext, TransientStepError, reject_unknown_keys
from .builtin import run_sync_bounded

__all__ = ["EmailConnector"]

_KEYS = ("to", "cc", "bcc", "reply_to", "from", "subject", "body", "html")
_ADDRESS_LISTS = ("to", "cc", "bcc", "reply_to")
_MAX_RECIPIENTS = 100
# Everything str.splitlines() splits on, and NUL: none of it belongs in a header.
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00")


def _is_dynamic(value: str) -> bool:
    """A value only known at run time (a template or a secret reference)."""
    return "{{" in value or "$secret:" in value


def _has_line_break(value: str) -> bool:
    return not _LINE_BREAKS.isdisjoint(value)


def _address_problem(value: Any) -> str | None:
    """Why ``value`` is not one address (``a@b.example`` or ``Name <a@b.example>``), or None."""
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if _has_line_break(value):
        return "contains a line break (header injection refused)"
    parsed = getaddresses([value])
    if len(parsed) != 1 or not parsed[0][1]:
        return "must be exactly one email address"
    try:
        validate_email(parsed[0][1])
    except ValidationError:
        return "is not a valid email address"
    return None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


class EmailConnector:
    """Sends one email with a text body and/or an html alternative (see the module docstring)."""

    code: ClassVar[str] = "email"
    needs_network: ClassVar[bool] = True
    is_llm: ClassVar[bool] = False

    # -- when a version is saved ---------------------------------------------------------------------------

    def validate_config(self, config: Mapping[str, Any], *, path: str) -> None:
        reject_unknown_keys(config, _KEYS, path=path)
        if "to" not in config:
            raise SpecError(f"{path}.to: required (a non-empty list of addresses, or a template)")
        for key in _ADDRESS_LISTS:
            if key in config:
                self._check_addresses(config[key], f"{path}.{key}", required=key == "to")
        if "from" in config:
            sender = config["from"]
            if not isinstance(sender, str):
                raise SpecError(f"{path}.from: must be a string (an email address or a template)")
            if not _is_dynamic(sender) and (problem := _address_problem(sender)):
                raise SpecError(f"{path}.from: {problem}")
        subject = config.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise SpecError(f"{path}.subject: required (a non-empty string)")
        if _has_line_break(subject):
            raise SpecError(f"{path}.subject: contains a line break (header injection refused)")
        for key in ("body", "html"):
            if key in config and not isinstance(config[key], str):
                raise SpecError(f"{path}.{key}: must be a string")
        if not config.get("body") and not config.get("html"):
            raise SpecError(f"{path}.body: 'body' or 'html' is required (a non-empty string)")

    @staticmethod
    def _check_addresses(value: Any, path: str, *, required: bool) -> None:
        if isinstance(value, str):
            if _is_dynamic(value):
                return  # a template: checked once rendered
            raise SpecError(f"{path}: must be a list of addresses (or a template)")
        if not isinstance(value, list) or (required and not value):
            raise SpecError(f"{path}: must be a{' non-empty' if required else ''} list of addresses (or a template)")
        if len(value) > _MAX_RECIPIENTS:
            raise SpecError(f"{path}: at most {_MAX_RECIPIENTS} addresses")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise SpecError(f"{path}[{i}]: must be a string (an email address or a template)")
            if not _is_dynamic(item) and (problem := _address_problem(item)):
                raise SpecError(f"{path}[{i}]: {problem}")

    # -- at run time ---------------------------------------------------------------------------------------

    @staticmethod
    def _addresses(config: Mapping[str, Any], key: str, *, required: bool) -> list[str]:
        value = config.get(key)
        if value is None and not required:
            return []
        if isinstance(value, str):  # a template that rendered to one address
            value = [value]
        if not isinstance(value, list) or (required and not value):
            raise PermanentStepError(f"config.{key}: must be a{' non-empty' if required else ''} list of addresses")
        if len(value) > _MAX_RECIPIENTS:
            raise PermanentStepError(f"config.{key}: at most {_MAX_RECIPIENTS} addresses")
        for i, item in enumerate(value):
            problem = _address_problem(item)
            if problem is not None:
                shown = f" ({_shown(item)})" if isinstance(item, str) and not _has_line_break(item) else ""
                raise PermanentStepError(f"config.{key}[{i}]: {problem}{shown}")
        return list(value)

    def _checked(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The rendered config, checked: addresses, no header injection."""
        to = self._addresses(config, "to", required=True)
        cc, bcc, reply_to = (self._addresses(config, key, required=False) for key in ("cc", "bcc", "reply_to"))
        sender = config.get("from") or django_settings.DEFAULT_FROM_EMAIL
        if (problem := _address_problem(sender)) is not None:
            where = "config.from" if config.get("from") else "settings.DEFAULT_FROM_EMAIL"
            raise PermanentStepError(f"{where}: {problem}")
        subject = config.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise PermanentStepError("config.subject: must be a non-empty string")
        if _has_line_break(subject):
            raise PermanentStepError("config.subject: contains a line break (header injection refused)")
        body, html = config.get("body") or "", config.get("html") or ""
        if not isinstance(body, str) or not isinstance(html, str):
            raise PermanentStepError("config.body / config.html: must be strings")
        if not body and not html:
            raise PermanentStepError("config.body: 'body' or 'html' is required")
        return {"to": to, "cc": cc, "bcc": bcc, "reply_to": reply_to, "from": sender, "subject": subject,
                "body": body, "html": html}

    async def run(self, config: Mapping[str, Any], ctx: StepContext) -> Any:
        checked = self._checked(config)  # on the loop: cheap, and a bad config fails before taking a thread
        # The Message-ID carries the step's idempotency key: a copy resent by a retry can be recognised.
        idstring = ctx.idempotency_key.replace(":", ".")
        return await run_sync_bounded(partial(_build_and_send, checked, idstring), f"email step {ctx.step_id!r}")


def _smtp_timeout() -> dict[str, Any]:
    """A socket timeout for Django's SMTP backend when EMAIL_TIMEOUT is unset (else a hung server would
    hold a sync thread for ever): the step deadline's default."""
    backend = import_string(django_settings.EMAIL_BACKEND)
    if isinstance(backend, type) and issubclass(backend, SmtpBackend) and django_settings.EMAIL_TIMEOUT is None:
        return {"timeout": get_settings().EXECUTION.timeout_seconds}
    return {}


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {text}".strip()


def _build_and_send(msg: dict[str, Any], idstring: str) -> dict[str, Any]:  # in a thread
    # In the thread: the first make_msgid() and SMTP EHLO look up this host's name (getfqdn), which may block.
    message_id = make_msgid(idstring=idstring, domain=DNS_NAME.get_fqdn())
    body, html = msg["body"], msg["html"]
    message = EmailMultiAlternatives(
        subject=msg["subject"], body=body or html, from_email=msg["from"], to=msg["to"], bcc=msg["bcc"],
        cc=msg["cc"], reply_to=msg["reply_to"], headers={"Message-ID": message_id},
    )
    if body and html:
        message.attach_alternative(html, "text/html")
    elif html:
        message.content_subtype = "html"  # html only: one text/html part
    return {"sent": _send(message), "to": list(msg["to"]), "message_id": message_id}


def _send(message: EmailMultiAlternatives) -> int:
    try:
        with get_connection(fail_silently=False, **_smtp_timeout()) as connection:
            return int(connection.send_messages([message]) or 0)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        refused = "; ".join(
            f"{addr}: {code} {msg.decode('utf-8', 'replace') if isinstance(msg, bytes) else msg}"
            for addr, (code, msg) in exc.recipients.items()
        )
        error = TransientStepError if codes and all(400 <= c < 500 for c in codes) else PermanentStepError
        raise error(f"SMTP: recipients refused ({refused})") from None
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError) as exc:
        raise TransientStepError(f"SMTP: could not talk to the mail server ({type(exc).__name__}: {exc})") from None
    except smtplib.SMTPResponseException as exc:  # SMTPDataError, SMTPSenderRefused, SMTPAuthenticationError ...
        error = TransientStepError if 400 <= exc.smtp_code < 500 else PermanentStepError
        raise error(f"SMTP: the mail server replied {_reply(exc)} ({type(exc).__name__})") from None
    except smtplib.SMTPException as exc:  # SMTPNotSupportedError (no STARTTLS, no AUTH), ...
        raise PermanentStepError(f"SMTP: {type(exc).__name__}: {exc}") from None
    except (TimeoutError, ConnectionError) as exc:
        raise TransientStepError(f"SMTP: could not reach the mail server ({type(exc).__name__}: {exc})") from None
    except OSError as exc:  # name resolution, network unreachable
        raise TransientStepError(f"SMTP: could not reach the mail server ({type(exc).__name__}: {exc})") from None
