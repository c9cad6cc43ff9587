"""Model-change events: ``<app_label>.<model>.created``, ``.updated`` and ``.deleted``.

::

    from automate import model_events

    class ShopConfig(AppConfig):
        def ready(self):
            model_events.register(Order, fields=["id", "total", "status", "api_token"], redact=["note"])

Payloads (``fields`` are the chosen fields after the write; ``changes`` only on ``.updated``)::

    {"model": "shop.order", "pk": 7, "fields": {"id": 7, "total": "120.00", "status": "paid", ...},
     "changes": {"status": {"old": "new", "new": "paid"}}}

* Values are JSON: decimals, dates, times, UUIDs as strings (Django's JSON encoder), a foreign key as its
  ``<name>_id`` value. Field names listed in ``redact`` are replaced by ``"[REDACTED]"``, and the whole
  payload then passes through :func:`automate.secrets.redact`, so a field named like a secret
  (``api_token``, ``password``) comes out redacted without being listed.
* Old values: ``pre_save`` loads the stored row (only the chosen fields, by primary key; ``SELECT … FOR
  UPDATE`` inside a transaction, so concurrent updates each see the true previous value). That is one
  extra SELECT per save of an existing row, none for an insert. A save that changes none of the chosen
  fields emits nothing; ``save(update_fields=[...])`` compares only those fields. A field saved as an
  ``F()`` expression is read back after the save (one more SELECT for that save).
* Transaction: the event is written by ``emit_event`` on the connection of the write (``using``), inside
  the caller's transaction, so a rollback removes the change and the event together. A delete always runs
  in a transaction; a plain ``save()`` in autocommit mode does not, so the event is then written in its
  own statement just after the change: use ``transaction.atomic()`` (or ``ATOMIC_REQUESTS``) to make them
  one.
* Bulk operations send no signals: ``QuerySet.update()``, ``bulk_create()`` and ``bulk_update()`` emit
  nothing (emit the event yourself in the same transaction). ``QuerySet.delete()`` does send
  ``post_delete`` per object (Django then loads every row), so each deleted row emits ``.deleted``.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save, pre_save

from .core.redaction import REDACTED
from .runtime import emit_event
from .secrets import redact as redact_secrets

__all__ = ["ModelEvents", "register", "registered", "unregister"]

SOURCE = "model_events"
_OLD_ATTR = "_automate_model_events_old"
_EVENTS = ("created", "updated", "deleted")
_encoder = DjangoJSONEncoder()


@dataclass(frozen=True, slots=True)
class ModelEvents:
    """One model's registration."""

    model: type[models.Model]
    fields: tuple[str, ...]  # field names, as given
    attnames: tuple[str, ...]  # the columns' attribute names (``customer_id`` for ``customer``)
    redact: frozenset[str]
    events: frozenset[str]

    @property
    def label(self) -> str:
        return self.model._meta.label_lower  # "shop.order"

    def event_type(self, action: str) -> str:
        return f"{self.label}.{action}"


_registry: dict[type[models.Model], ModelEvents] = {}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, decimal.Decimal | datetime.date | datetime.time | datetime.timedelta | uuid.UUID):
        return _encoder.default(value)
    if isinstance(value, bytes | memoryview):
        return REDACTED  # binary columns are not put in events
    return str(value)


def _resolve_fields(model: type[models.Model], fields: Iterable[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    opts = model._meta
    concrete = {f.name: f for f in opts.concrete_fields}
    concrete.update({f.attname: f for f in opts.concrete_fields})
    names = [f.name for f in opts.concrete_fields] if fields is None else list(fields)
    if isinstance(fields, str):
        raise ImproperlyConfigured(f"model_events.register({opts.label}): fields must be a list of names")
    if not names:
        raise ImproperlyConfigured(f"model_events.register({opts.label}): fields is empty")
    attnames = []
    for name in names:
        field = concrete.get(name)
        if field is None:
            known = ", ".join(sorted(f.name for f in opts.concrete_fields))
            raise ImproperlyConfigured(
                f"model_events.register({opts.label}): fields: {name!r} is not a concrete field of "
                f"{opts.label} (known: {known})"
            )
        attnames.append(field.attname)
    if len(set(attnames)) != len(attnames):
        raise ImproperlyConfigured(f"model_events.register({opts.label}): fields lists a field twice")
    return tuple(names), tuple(attnames)


def register(
    model: type[models.Model],
    *,
    fields: Iterable[str] | None = None,
    redact: Iterable[str] = (),
    events: Iterable[str] = _EVENTS,
) -> ModelEvents:
    """Emit ``<app_label>.<model>.created/.updated/.deleted`` for ``model``; call it from ``AppConfig.ready``.

    ``fields``: the fields put in payloads (default: every concrete field). ``redact``: field names whose
    values are always replaced by ``"[REDACTED]"``. ``events``: a subset of created/updated/deleted.
    """
    if not (isinstance(model, type) and issubclass(model, models.Model)) or model._meta.abstract:
        raise ImproperlyConfigured(f"model_events.register(): {model!r} is not a concrete Django model")
    label = model._meta.label
    if model in _registry:
        raise ImproperlyConfigured(f"model_events.register({label}): the model is already registered")
    names, attnames = _resolve_fields(model, fields)
    chosen_events = frozenset(events)
    if isinstance(events, str) or not chosen_events or not chosen_events <= set(_EVENTS):
        raise ImproperlyConfigured(
            f"model_events.register({label}): events must be a non-empty list of {', '.join(_EVENTS)}"
        )
    redacted = frozenset(redact) if not isinstance(redact, str) else frozenset({redact})
    unknown = redacted - set(names) - set(attnames)
    if unknown:
        raise ImproperlyConfigured(
            f"model_events.register({label}): redact: {sorted(unknown)} are not among the chosen fields"
        )
    # Names and attnames both redact: "customer" also hides "customer_id".
    for name, attname in zip(names, attnames, strict=True):
        if name in redacted or attname in redacted:
            redacted = redacted | {name, attname}
    registration = ModelEvents(model, names, attnames, redacted, chosen_events)
    _registry[model] = registration
    uid = _uid(model)
    if "updated" in chosen_events:
        pre_save.connect(_pre_save, sender=model, dispatch_uid=uid, weak=False)
    if chosen_events & {"created", "updated"}:
        post_save.connect(_post_save, sender=model, dispatch_uid=uid, weak=False)
    if "deleted" in chosen_events:
        post_delete.connect(_post_delete, sender=model, dispatch_uid=uid, weak=False)
    return registration


def unregister(model: type[models.Model]) -> bool:
    """Stop emitting events for ``model``; False if it was not registered."""
    if _registry.pop(model, None) is None:
        return False
    uid = _uid(model)
    for signal in (pre_save, post_save, post_delete):
        signal.disconnect(sender=model, dispatch_uid=uid)
    return True


def registered() -> dict[type[models.Model], ModelEvents]:
    return dict(_registry)


def _uid(model: type[models.Model]) -> str:
    return f"automate.model_events:{model._meta.label}"


def _stored_form(field: models.Field, value: Any) -> Any:
    """The value as the column holds it: ``total=1`` on an instance is the stored ``Decimal("1.00")``."""
    if value is None:
        return None
    try:
        value = field.to_python(value)
    except Exception:  # a value the field cannot read: compared and shown as it is
        return value
    if isinstance(field, models.DecimalField) and isinstance(value, decimal.Decimal) and value.is_finite():
        value = value.quantize(decimal.Decimal(1).scaleb(-(field.decimal_places or 0)))
    return value


def _values(reg: ModelEvents, source: Any) -> dict[str, Any]:
    get = source.get if isinstance(source, dict) else lambda name: getattr(source, name)
    opts = reg.model._meta
    return {
        name: _jsonable(_stored_form(opts.get_field(attname), get(attname)))  # type: ignore[arg-type]
        for name, attname in zip(reg.fields, reg.attnames, strict=True)
    }


def _payload(reg: ModelEvents, pk: Any, fields: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    for name in reg.redact.intersection(fields):
        fields[name] = REDACTED
    payload: dict[str, Any] = {"model": reg.label, "pk": _jsonable(pk), "fields": fields}
    if changes is not None:
        for name in reg.redact.intersection(changes):
            changes[name] = {"old": REDACTED, "new": REDACTED}
        payload["changes"] = changes
    result: dict[str, Any] = redact_secrets(payload)
    return result


def _pre_save(sender: type[models.Model], instance: models.Model, raw: bool, using: str, **kwargs: Any) -> None:
    reg = _registry.get(sender)
    if reg is None or raw or instance.pk is None:
        return
    if instance._state.adding and (sender._meta.pk.has_default() or sender._meta.pk.has_db_default()):
        return  # Django INSERTs such a new instance straight away: there is no stored row
    rows = sender._base_manager.using(using).filter(pk=instance.pk)
    if transaction.get_connection(using).in_atomic_block:
        rows = rows.select_for_update()
    setattr(instance, _OLD_ATTR, rows.values(*reg.attnames).first())


def _post_save(
    sender: type[models.Model], instance: models.Model, created: bool, raw: bool, using: str, **kwargs: Any
) -> None:
    reg = _registry.get(sender)
    old = instance.__dict__.pop(_OLD_ATTR, None)
    if reg is None or raw:
        return
    if created:
        if "created" in reg.events:
            emit_event(reg.event_type("created"), _payload(reg, instance.pk, _values(reg, instance), None),
                       source=SOURCE, using=using)
        return
    if "updated" not in reg.events or old is None:
        return  # old is None only for a raw save (fixtures), which emits nothing
    update_fields = kwargs.get("update_fields")
    written = None if update_fields is None else set(update_fields)
    before = _values(reg, old)
    if any(hasattr(getattr(instance, attname), "resolve_expression") for attname in reg.attnames):
        # An F() expression was saved: the new values are read back (one more SELECT, this save only).
        stored = sender._base_manager.using(using).filter(pk=instance.pk).values(*reg.attnames).first()
        after = _values(reg, stored or {})
    else:
        after = _values(reg, instance)
    changes: dict[str, Any] = {}
    for name, attname in zip(reg.fields, reg.attnames, strict=True):
        if written is not None and name not in written and attname not in written:
            after[name] = before[name]  # not written: the stored value stands
        elif before[name] != after[name]:
            changes[name] = {"old": before[name], "new": after[name]}
    if changes:
        emit_event(reg.event_type("updated"), _payload(reg, instance.pk, after, changes), source=SOURCE, using=using)


def _post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    reg = _registry.get(sender)
    if reg is None or "deleted" not in reg.events:
        return
    emit_event(reg.event_type("deleted"), _payload(reg, instance.pk, _values(reg, instance), None),
               source=SOURCE, using=using)
