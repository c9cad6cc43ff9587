"""No NaN or Infinity gets into the validated settings: every float key refuses them, naming the key.

The float keys are read from the settings models, so a float key added later is covered too.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from pydantic import BaseModel

from automate.conf import AutomateSettings, validate_settings

NAN, INF = float("nan"), float("inf")


def _float_keys(model: type[BaseModel] = AutomateSettings, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_float_keys(ann, (*prefix, name)))
        elif ann is float or ann == float | None:
            keys.append((*prefix, name))
    return keys


FLOAT_KEYS = _float_keys()
# Every float setting refuses +Infinity too (POLICY.llm_budget_daily has no upper bound but allow_inf_nan=False).
INF_ACCEPTED: set[tuple[str, ...]] = set()


def _settings(key: tuple[str, ...], value: float) -> dict:
    section, name = key
    return {section: {name: value}}


def test_the_float_keys_are_found():
    assert ("EXECUTION", "poll_interval") in FLOAT_KEYS and ("POLICY", "llm_budget_daily") in FLOAT_KEYS
    assert all(len(key) == 2 for key in FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS, ids=".".join)
def test_nan_is_refused(key):
    with pytest.raises(ImproperlyConfigured, match=rf"DJANGO_AUTOMATE\.{key[0]}\.{key[1]}: got nan"):
        validate_settings(_settings(key, NAN))


@pytest.mark.parametrize("key", FLOAT_KEYS, ids=".".join)
def test_minus_infinity_is_refused(key):
    with pytest.raises(ImproperlyConfigured, match=rf"DJANGO_AUTOMATE\.{key[0]}\.{key[1]}: got -inf"):
        validate_settings(_settings(key, -INF))


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(k, marks=pytest.mark.xfail(strict=True, reason="no upper bound: +Infinity is accepted"))
        if k in INF_ACCEPTED
        else k
        for k in FLOAT_KEYS
    ],
    ids=".".join,
)
def test_infinity_is_refused(key):
    with pytest.raises(ImproperlyConfigured, match=rf"DJANGO_AUTOMATE\.{key[0]}\.{key[1]}: got inf"):
        validate_settings(_settings(key, INF))
