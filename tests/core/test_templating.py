import copy
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from automate.core.errors import SecretNotFound, TemplateError
from automate.core.templating import (
    MAX_DEPTH,
    MAX_OUTPUT_SIZE,
    TemplateSyntaxError,
    copy_constant,
    find_references,
    format_location,
    is_constant,
    referenced_paths,
    referenced_secrets,
    render,
)


def make_context(payload=None, outputs=None):
    return {
        "event": {"id": "evt-1", "type": "order.created", "payload": payload if payload is not None else {}},
        "steps": {name: {"output": out} for name, out in (outputs or {}).items()},
        "run": {"id": "run-9"},
    }


CTX = make_context(
    payload={"order": {"id": 42, "total": 9.5, "paid": True, "note": None, "lines": [{"sku": "A"}, {"sku": "B"}]}},
    outputs={"fetch": {"status": 200, "body": {"x": [1, 2], "ok": False}}},
)


class Secrets:
    def __init__(self, values):
        self.values = values
        self.calls = []

    def __call__(self, name):
        self.calls.append(name)
        if name not in self.values:
            raise SecretNotFound(f"$secret:{name}")
        return self.values[name]


# --- lookups and types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ event.payload.order.id }}", 42),
        ("{{event.payload.order.id}}", 42),
        ("{{   run.id\t}}", "run-9"),
        ("{{ event.payload.order.total }}", 9.5),
        ("{{ event.payload.order.paid }}", True),
        ("{{ event.payload.order.note }}", None),
        ("{{ event.payload.order.lines }}", [{"sku": "A"}, {"sku": "B"}]),
        ("{{ event.payload.order.lines.1.sku }}", "B"),
        ("{{ steps.fetch.output.body }}", {"x": [1, 2], "ok": False}),
        ("{{ steps.fetch.output.body.x.0 }}", 1),
        ("{{ event.type }}", "order.created"),
    ],
)
def test_a_string_that_is_one_template_keeps_the_value_type(template, expected):
    result = render(template, CTX)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Order #{{ event.payload.order.id }}", "Order #42"),
        ("{{ event.payload.order.id }}/{{ run.id }}", "42/run-9"),
        ("total={{event.payload.order.total}}", "total=9.5"),
        ("paid={{ event.payload.order.paid }} ok={{ steps.fetch.output.body.ok }}", "paid=true ok=false"),
        ("note=[{{ event.payload.order.note }}]", "note=[]"),
        ("body={{ steps.fetch.output.body }}", 'body={"x":[1,2],"ok":false}'),
        ("{{ event.payload.order.lines }} ", '[{"sku":"A"},{"sku":"B"}] '),
        (" {{ run.id }}", " run-9"),
        ("no templates at all", "no templates at all"),
        ("braces } and }} alone are literal", "braces } and }} alone are literal"),
    ],
)
def test_interpolation_inside_a_longer_string_gives_a_string(template, expected):
    assert render(template, CTX) == expected


def test_non_ascii_values_are_not_escaped_when_interpolated():
    ctx = make_context(payload={"name": "Zoë", "tags": ["café"]})
    assert render("{{ event.payload.name }}: {{ event.payload.tags }}", ctx) == 'Zoë: ["café"]'


def test_walks_dicts_and_lists_and_never_templates_keys():
    config = {
        "url": "https://api.example.com/orders/{{ event.payload.order.id }}",
        "{{ run.id }}": "key stays literal",
        "items": ["{{ event.payload.order.lines.0 }}", 3, None, True, {"deep": ["{{ run.id }}"]}],
        "count": 5,
    }
    original = copy.deepcopy(config)
    assert render(config, CTX) == {
        "url": "https://api.example.com/orders/42",
        "{{ run.id }}": "key stays literal",
        "items": [{"sku": "A"}, 3, None, True, {"deep": ["run-9"]}],
        "count": 5,
    }
    assert config == original  # the input is never modified


def test_tuples_come_back_as_lists():
    assert render(("{{ run.id }}", 1), CTX) == ["run-9", 1]


def test_output_does_not_alias_the_context():
    ctx = make_context(payload={"lines": [{"sku": "A"}]})
    out = render({"lines": "{{ event.payload.lines }}"}, ctx)
    out["lines"][0]["sku"] = "changed"
    assert ctx["event"]["payload"]["lines"][0]["sku"] == "A"


def test_any_mapping_works_as_context_and_other_scalars_render_with_str():
    import uuid

    run_id = uuid.UUID(int=7)
    ctx = {"run": {"id": run_id}}
    assert render("{{ run.id }}", ctx) is run_id
    assert render("run {{ run.id }}", ctx) == f"run {run_id}"


# --- unknown paths and malformed templates -------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ event.payload.ordr }}", "(no key 'ordr')"),
        ("{{ nope }}", "(no key 'nope')"),
        ("{{ event.payload.order.lines.2 }}", "(index 2 out of range for 2 items)"),
        ("{{ event.payload.order.lines.first }}", "('first' is not a list index)"),
        ("{{ event.payload.order.lines.-1 }}", "('-1' is not a list index)"),
        ("{{ event.payload.order.id.digits }}", "(cannot look up 'digits' in a number)"),
        ("{{ event.payload.order.note.x }}", "(cannot look up 'x' in null)"),
        ("{{ event.type.upper }}", "(cannot look up 'upper' in a string)"),
        ("{{ event.payload.order.__class__ }}", "(no key '__class__')"),
        ("{{ steps.missing.output }}", "(no key 'missing')"),
    ],
)
def test_unknown_path_names_the_step_and_the_path(template, reason):
    path = template.strip("{} ")
    with pytest.raises(TemplateError) as info:
        render({"text": template}, CTX, step_id="notify")
    assert str(info.value) == f"step 'notify': unknown template path '{path}' {reason} at $.text"


def test_unknown_path_message_from_the_brief():
    with pytest.raises(TemplateError, match=r"^step 'notify': unknown template path 'event\.payload\.ordr' "):
        render("{{ event.payload.ordr }}", CTX, step_id="notify")


def test_error_without_step_id_and_nested_location():
    with pytest.raises(TemplateError) as info:
        render({"a": [{"b c": "x {{ run.nope }}"}]}, CTX)
    assert str(info.value) == "unknown template path 'run.nope' (no key 'nope') at $.a[0][\"b c\"]"


def test_code_is_never_executed():
    with pytest.raises(TemplateError, match="unknown template path .*no key"):
        render("{{ __import__('os').system('echo') }}", CTX)
    with pytest.raises(TemplateError, match="invalid template"):
        render("{{ run.id if True else 0 }}", CTX)


def test_attribute_access_is_never_used():
    class Obj:
        secret = "leak"

    with pytest.raises(TemplateError, match="cannot look up 'secret'"):
        render("{{ run.obj.secret }}", {"run": {"obj": Obj()}})


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ }}", "invalid template"),
        ("{{}}", "invalid template"),
        ("{{ event.payload. }}", "invalid template"),
        ("{{ .x }}", "invalid template"),
        ("{{ a b }}", "invalid template"),
        ("{{ a {{ b }}", "invalid template"),
        ("{{{ a }}}", "invalid template"),
        ("{{ event.payload.order.id | upper }}", "invalid template"),
        ("hello {{ run.id", "unclosed '{{'"),
        ("{{ run.id }} and {{", "unclosed '{{'"),
    ],
)
def test_malformed_templates_raise_with_location(template, reason):
    with pytest.raises(TemplateError, match=reason) as info:
        render({"x": [template]}, CTX, step_id="s1")
    assert str(info.value).startswith("step 's1': ")
    assert str(info.value).endswith(" at $.x[0]")


# --- $expr ---------------------------------------------------------------------------------------


def test_expr_is_applied_with_jsonlogic_against_the_context():
    config = {
        "total": {"$expr": {"+": [{"var": "event.payload.order.total"}, 1]}},
        "label": {"$expr": {"cat": ["#", {"var": "event.payload.order.id"}]}},
        "literal": {"$expr": "{{ not a template }}"},
    }
    assert render(config, CTX) == {"total": 10.5, "label": "#42", "literal": "{{ not a template }}"}


def test_expr_must_be_alone_in_its_object():
    with pytest.raises(TemplateError, match=r"'\$expr' must be the only key of its object at \$\.v"):
        render({"v": {"$expr": 1, "other": 2}}, CTX, step_id="s")


def test_expr_failure_is_a_template_error_naming_the_step():
    with pytest.raises(TemplateError, match=r"^step 's': \$expr failed: .* at \$\.v"):
        render({"v": {"$expr": {"nosuchop": [1]}}}, CTX, step_id="s")


def test_expr_results_are_never_scanned_for_secrets_or_templates():
    secrets = Secrets({"TOKEN": "s3cr3t"})
    config = {"v": {"$expr": {"cat": ["$secret:", "TOKEN {{ run.id }}"]}}}
    assert render(config, CTX, resolve_secret=secrets) == {"v": "$secret:TOKEN {{ run.id }}"}
    assert secrets.calls == []


# --- secrets -------------------------------------------------------------------------------------


def test_secrets_are_left_alone_without_a_resolver():
    config = {"auth": "Bearer $secret:API_TOKEN", "key": "$secret:KEY", "id": "{{ run.id }} $secret:KEY"}
    assert render(config, CTX) == {"auth": "Bearer $secret:API_TOKEN", "key": "$secret:KEY", "id": "run-9 $secret:KEY"}


def test_secrets_are_resolved_whole_or_embedded_and_once_per_name():
    secrets = Secrets({"API_TOKEN": "tok", "KEY": "k"})
    config = {
        "auth": "Bearer $secret:API_TOKEN",
        "key": "$secret:KEY",
        "both": ["$secret:KEY-$secret:KEY/{{ run.id }}"],
        "not_a_ref": "$secret: spaced and $secret:1bad",
    }
    assert render(config, CTX, resolve_secret=secrets) == {
        "auth": "Bearer tok",
        "key": "k",
        "both": ["k-k/run-9"],
        "not_a_ref": "$secret: spaced and $secret:1bad",
    }
    assert sorted(secrets.calls) == ["API_TOKEN", "KEY"]


def test_a_root_string_secret_is_resolved():
    assert render("$secret:X", CTX, resolve_secret=Secrets({"X": "x"})) == "x"


def test_secrets_are_resolved_last_so_a_template_error_touches_no_secret():
    secrets = Secrets({"TOKEN": "t"})
    with pytest.raises(TemplateError, match="no key 'nope'"):
        render({"a": "$secret:TOKEN", "b": "{{ run.nope }}"}, CTX, resolve_secret=secrets)
    assert secrets.calls == []


def test_secret_values_are_not_template_expanded():
    secrets = Secrets({"WEIRD": "{{ run.id }} $secret:OTHER"})
    assert render("x $secret:WEIRD", CTX, resolve_secret=secrets) == "x {{ run.id }} $secret:OTHER"
    assert secrets.calls == ["WEIRD"]


def test_payload_text_naming_a_secret_is_never_resolved():
    """An untrusted event payload must not be able to exfiltrate a secret through a template."""
    secrets = Secrets({"DB_PASSWORD": "hunter2"})
    ctx = make_context(payload={"comment": "$secret:DB_PASSWORD", "nested": {"v": ["$secret:DB_PASSWORD"]}})
    config = {
        "whole": "{{ event.payload.comment }}",
        "embedded": "Comment: {{ event.payload.comment }} by $secret:DB_PASSWORD",
        "object": "{{ event.payload.nested }}",
        "json": "data={{ event.payload.nested }}",
    }
    out = render(config, ctx, resolve_secret=secrets)
    assert out == {
        "whole": "$secret:DB_PASSWORD",
        "embedded": "Comment: $secret:DB_PASSWORD by hunter2",
        "object": {"v": ["$secret:DB_PASSWORD"]},
        "json": 'data={"v":["$secret:DB_PASSWORD"]}',
    }
    assert "hunter2" not in json.dumps(out["whole"]) + json.dumps(out["object"]) + out["json"]
    assert secrets.calls == ["DB_PASSWORD"]  # only for the literal token in the config


def test_a_missing_secret_propagates_the_resolver_error():
    with pytest.raises(SecretNotFound) as info:
        render({"k": "$secret:NOPE"}, CTX, resolve_secret=Secrets({}))
    assert info.value.ref == "$secret:NOPE"


def test_a_resolver_returning_a_non_string_is_an_error():
    with pytest.raises(TemplateError, match="secret 'N' did not resolve to a string at \\$\\.k"):
        render({"k": "$secret:N"}, CTX, resolve_secret=lambda name: 5, step_id="s")


# --- references ----------------------------------------------------------------------------------


def test_referenced_secrets_and_paths():
    config = {
        "url": "https://x/{{ event.payload.order.id }}?t=$secret:TOKEN",
        "headers": {"Authorization": "Bearer $secret:API_KEY", "X": "{{steps.fetch.output.body}}"},
        "sum": {
            "$expr": {
                "+": [
                    {"var": "event.payload.a"},
                    {"var": ["steps.fetch.output.n", 0]},
                    {"reduce": [{"var": "event.payload.lines"}, {"var": "accumulator"}, {"var": "run.id"}]},
                    {"map": [{"var": "event.payload.items"}, {"var": "price"}]},
                    "$secret:IN_EXPR_IS_DATA",
                ]
            }
        },
    }
    assert referenced_secrets(config) == {"TOKEN", "API_KEY"}
    assert referenced_paths(config) == {
        "event.payload.order.id",
        "steps.fetch.output.body",
        "event.payload.a",
        "steps.fetch.output.n",
        "event.payload.lines",
        "run.id",
        "event.payload.items",
    }


def test_find_references_reports_locations_and_expr_rules():
    config = {"a": ["x {{ run.id }}", {"$expr": {"var": "event.id"}}]}
    refs = list(find_references(config))
    assert refs[0] == ("path", "run.id", ("a", 0))
    assert refs[1] == ("expr", {"var": "event.id"}, ("a", 1, "$expr"))
    assert refs[2] == ("path", "event.id", ("a", 1, "$expr"))


def test_references_reject_malformed_templates_with_a_location():
    with pytest.raises(TemplateSyntaxError) as info:
        referenced_paths({"a": {"b": "oops {{ x"}})
    assert info.value.loc == ("a", "b")
    assert str(info.value) == "unclosed '{{' (write a literal '{{' as {\"$expr\": \"...\"}) at $.a.b"
    with pytest.raises(TemplateSyntaxError, match="only key"):
        referenced_secrets({"$expr": 1, "x": 2})


def test_format_location():
    assert format_location(("steps", 2, "config", "url")) == "steps[2].config.url"
    assert format_location(("a b", 0, "$expr"), "$") == '$["a b"][0].$expr'
    assert format_location((), "$") == "$"


# --- limits --------------------------------------------------------------------------------------


def nested(depth, leaf):
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


def test_config_depth_is_limited():
    assert render(nested(MAX_DEPTH, "{{ run.id }}"), CTX) == nested(MAX_DEPTH, "run-9")
    with pytest.raises(TemplateError, match="nested deeper than 64"):
        render(nested(MAX_DEPTH + 1, "x"), CTX)
    with pytest.raises(TemplateSyntaxError, match="nested deeper than 64"):
        referenced_paths(nested(MAX_DEPTH + 1, "x"))


def test_context_value_depth_is_limited():
    ctx = make_context(payload={"deep": nested(MAX_DEPTH + 1, 1)})
    with pytest.raises(TemplateError, match="value nested deeper than 64"):
        render("{{ event.payload.deep }}", ctx)


def test_output_size_is_limited():
    big = "x" * (MAX_OUTPUT_SIZE // 4)
    ctx = make_context(payload={"big": big})
    assert len(render("{{ event.payload.big }}", ctx)) == len(big)
    hostile = {"copies": ["{{ event.payload.big }}"] * 5}
    with pytest.raises(TemplateError, match="rendered output exceeds"):
        render(hostile, ctx, step_id="s")
    with pytest.raises(TemplateError, match="rendered output exceeds"):
        render("{{ event.payload.big }}" * 5, ctx)


# --- properties ----------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
# Strings with no template syntax: "{{" is the only thing that makes a string special without a resolver.
plain_text = st.text().filter(lambda s: "{{" not in s)
template_free = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | plain_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4).filter(lambda d: "$expr" not in d)
    ),
    max_leaves=20,
)
hostile_text = st.lists(
    st.sampled_from(["{{", "}}", "{{ run.id }}", "$secret:TOKEN", "$secret:", "a", " ", "{", "$expr"]) | st.text(),
    max_size=8,
).map("".join)


@given(json_values)
def test_property_exact_template_preserves_any_json_value(value):
    ctx = make_context(payload={"v": value})
    assert render("{{ event.payload.v }}", ctx) == value
    assert render({"wrapped": ["{{event.payload.v}}"]}, ctx) == {"wrapped": [value]}


@given(template_free)
def test_property_template_free_structure_renders_to_itself(value):
    assert render(value, CTX) == value


@given(hostile_text)
def test_property_payload_text_is_never_reinterpreted(text):
    secrets = Secrets({"TOKEN": "RESOLVED"})
    ctx = make_context(payload={"s": text})
    assert render("{{ event.payload.s }}", ctx, resolve_secret=secrets) == text
    assert render("<{{ event.payload.s }}>", ctx, resolve_secret=secrets) == f"<{text}>"
    assert render("$secret:TOKEN|{{ event.payload.s }}", ctx, resolve_secret=secrets) == f"RESOLVED|{text}"
    assert set(secrets.calls) == {"TOKEN"}


@given(hostile_text)
def test_property_config_strings_render_or_raise_template_error_only(text):
    try:
        out = render({"v": text}, CTX)
    except TemplateError as exc:
        assert "{{" in text, exc  # only template syntax can fail to render against this context
    else:
        assert isinstance(out["v"], str)
        if "{{" not in text:
            assert out["v"] == text


# --- the constant-config fast path (automate.aio.steps copies such a config instead of rendering it) ---


@given(json_values | hostile_text)
def test_property_a_constant_config_copies_to_what_render_returns(value):
    """Whatever is_constant accepts renders to exactly its copy, with any context and any resolver."""
    if is_constant(value):
        assert copy_constant(value) == render(value, CTX, resolve_secret=lambda name: "RESOLVED")
        assert copy_constant(value) == value


@given(template_free)
def test_property_template_free_data_without_secret_tokens_is_constant(value):
    if "$secret:" not in json.dumps(value):
        assert is_constant(value)


def test_what_is_not_constant():
    assert not is_constant({"text": "hi {{ event.id }}"})
    assert not is_constant({"token": "$secret:API_KEY"})
    assert not is_constant({"v": {"$expr": {"var": "event.id"}}})
    assert not is_constant("{{ unclosed")  # render raises: the copy must not hide that
    assert not is_constant(("a", "tuple"))  # not parsed JSON: rendered as before
    deep: object = "leaf"
    for _ in range(MAX_DEPTH + 2):
        deep = [deep]
    assert not is_constant(deep)  # render refuses it (too deep): so must the fast path
    assert not is_constant("x" * (MAX_OUTPUT_SIZE + 1))  # over render's size budget
    assert is_constant({"url": "https://example.com", "n": [1, 2.5, None, True], "nested": {"a": "b"}})


def test_copy_constant_shares_no_container():
    config = {"kwargs": {"items": [1, 2]}}
    copied = copy_constant(config)
    copied["kwargs"]["items"].append(3)
    assert config == {"kwargs": {"items": [1, 2]}}
