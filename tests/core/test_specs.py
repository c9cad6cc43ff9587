import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from automate.core.errors import SpecError
from automate.core.specs import (
    MAX_STEPS,
    BackoffPolicy,
    StepSpec,
    StepsSpec,
    TriggerSpec,
    WorkflowSpec,
    parse_steps,
    parse_trigger_spec,
    parse_workflow,
)


def step(id, type="http", **fields):
    return {"id": id, "type": type, **fields}


def steps_error(data) -> str:
    with pytest.raises(SpecError) as info:
        parse_steps(data)
    return str(info.value)


def trigger_error(data) -> str:
    with pytest.raises(SpecError) as info:
        parse_trigger_spec(data)
    return str(info.value)


# --- steps: fields -------------------------------------------------------------------------------


def test_minimal_step_gets_defaults():
    spec = parse_steps([step("fetch")])
    (only,) = spec
    assert only == StepSpec(id="fetch", type="http")
    assert only.config == {}
    assert only.depends_on == ()
    assert only.when is None
    assert only.timeout_seconds is None
    assert only.max_retries is None
    assert only.retry == BackoffPolicy(kind="exponential", base_seconds=1.0, max_seconds=300.0, jitter="full")


def test_full_step_round_trips_through_plain_json():
    data = [
        step("fetch", config={"url": "https://x/{{ event.payload.id }}", "n": [1, 2.5, None, True]}),
        step(
            "notify",
            "slack.webhook",
            config={"text": "{{ steps.fetch.output.body }}", "auth": "$secret:SLACK"},
            depends_on=["fetch"],
            when={"==": [{"var": "steps.fetch.output.status"}, 200]},
            timeout_seconds=12.5,
            max_retries=5,
            retry={"kind": "fixed", "base_seconds": 2, "max_seconds": 2, "jitter": "none"},
        ),
    ]
    spec = parse_steps(data)
    dumped = spec.model_dump(mode="json")
    assert isinstance(dumped, list)
    assert json.loads(json.dumps(dumped)) == dumped
    assert dumped[1]["depends_on"] == ["fetch"]
    assert dumped[1]["retry"] == {"kind": "fixed", "base_seconds": 2.0, "max_seconds": 2.0, "jitter": "none"}
    assert parse_steps(dumped) == spec
    assert parse_steps(json.loads(spec.model_dump_json())) == spec


def test_specs_are_frozen():
    spec = parse_steps([step("a")])
    with pytest.raises(ValidationError):
        spec[0].id = "b"
    with pytest.raises(ValidationError):
        spec[0].retry.base_seconds = 3.0


def test_config_is_copied_from_the_input():
    config = {"headers": {"a": "1"}, "items": ("x", "y")}
    spec = parse_steps([step("a", config=config)])
    config["headers"]["a"] = "changed"
    assert spec[0].config == {"headers": {"a": "1"}, "items": ["x", "y"]}


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (step("1abc"), "steps[0].id: must start with a letter or '_'"),
        (step("a b"), "steps[0].id: must start with a letter or '_'"),
        (step("x" * 65), "steps[0].id: must start with a letter or '_'"),
        (step(7), "steps[0].id: must be a string"),
        ({"type": "http"}, "steps[0].id: required"),
        (step("a", "HTTP"), "steps[0].type: must be a connector code"),
        (step("a", "1http"), "steps[0].type: must be a connector code"),
        (step("a", "http-get"), "steps[0].type: must be a connector code"),
        ({"id": "a"}, "steps[0].type: required"),
        (step("a", retries=3), "steps[0].retries: unknown field"),
        (step("a", config=[1]), "steps[0].config: must be a JSON object"),
        (step("a", depends_on="b"), "steps[0].depends_on: must be a list of step ids"),
        (step("a", depends_on=[1]), "steps[0].depends_on[0]: must be a string"),
        (step("a", timeout_seconds=0), "steps[0].timeout_seconds: Input should be greater than 0"),
        (step("a", timeout_seconds=-1), "steps[0].timeout_seconds: Input should be greater than 0"),
        (step("a", timeout_seconds="5"), "steps[0].timeout_seconds: must be a number"),
        (step("a", timeout_seconds=float("nan")), "steps[0].timeout_seconds: Input should be a finite number"),
        (step("a", max_retries=-1), "steps[0].max_retries: Input should be greater than or equal to 0"),
        (step("a", max_retries=101), "steps[0].max_retries: Input should be less than or equal to 100"),
        (step("a", max_retries=1.5), "steps[0].max_retries: must be an integer"),
        (step("a", max_retries=True), "steps[0].max_retries: must be an integer"),
        (step("a", max_retries="3"), "steps[0].max_retries: must be an integer"),
        (step("a", retry={"kind": "linear"}), "steps[0].retry.kind: Input should be 'exponential' or 'fixed'"),
        (step("a", retry={"jitter": "half"}), "steps[0].retry.jitter: Input should be 'full' or 'none'"),
        (step("a", retry={"base_seconds": 0}), "steps[0].retry.base_seconds: Input should be greater than 0"),
        (step("a", retry={"base_seconds": 10, "max_seconds": 5}), "steps[0].retry.max_seconds: must be >= base"),
        (step("a", retry={"factor": 2}), "steps[0].retry.factor: unknown field"),
        ("a", "steps[0]: must be a JSON object"),
    ],
)
def test_bad_step_fields_name_the_path(bad, expected):
    message = steps_error([bad])
    assert message.startswith(expected), message


def test_errors_point_at_the_right_index_and_all_are_reported():
    with pytest.raises(SpecError) as info:
        parse_steps([step("a"), step("b"), step("c", "BAD", max_retries=-1)])
    assert info.value.problems == (
        ("steps[2].type", info.value.problems[0][1]),
        ("steps[2].max_retries", "Input should be greater than or equal to 0"),
    )
    assert str(info.value).startswith("steps[2].type: must be a connector code")
    assert "; steps[2].max_retries: " in str(info.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "steps: a workflow has 1 to 500 steps, not 0"),
        ({"id": "a"}, "steps: must be a list"),
        (None, "steps: must be a list"),
        (
            [step(f"s{i}") for i in range(MAX_STEPS + 1)],
            f"steps: a workflow has 1 to {MAX_STEPS} steps, not {MAX_STEPS + 1}",
        ),
    ],
)
def test_steps_must_be_a_non_empty_bounded_list(data, expected):
    assert steps_error(data).startswith(expected)


# --- config must be plain JSON, and errors never echo it ------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"url": {1, 2}}, "steps[0].config.url: value of type set is not a JSON value"),
        ({"h": {"X-Api-Key": object()}}, "steps[0].config.h.X-Api-Key: value of type object is not a JSON value"),
        ({"list": [1, b"raw"]}, "steps[0].config.list[1]: value of type bytes is not a JSON value"),
        ({"n": float("inf")}, "steps[0].config.n: numbers must be finite"),
        ({"a b": {1: "x"}}, 'steps[0].config["a b"]: object keys must be strings, not int'),
    ],
)
def test_non_json_config_names_the_path(config, expected):
    assert steps_error([step("a", config=config)]).startswith(expected)


def test_config_errors_never_echo_values():
    secret = "sk-live-0123456789abcdef"
    config = {"headers": {"Authorization": f"Bearer {secret}"}, "bad": {secret}}
    message = steps_error([step("a", config=config)])
    assert message.startswith("steps[0].config.bad: value of type set is not a JSON value")
    assert secret not in message
    message = steps_error([step("a", config={"text": f"{secret} {{{{ oops"})])
    assert message.startswith("steps[0].config.text: unclosed '{{'")
    assert secret not in message


def test_config_depth_is_limited():
    deep = "leaf"
    for _ in range(65):
        deep = {"k": deep}
    assert "nested deeper than 64 levels" in steps_error([step("a", config={"x": deep})])


# --- the graph -----------------------------------------------------------------------------------


def test_duplicate_ids():
    message = steps_error([step("a"), step("b"), step("a")])
    assert message == "steps[2].id: duplicate step id 'a' (first at steps[0])"


def test_unknown_dependency():
    assert steps_error([step("a"), step("b", depends_on=["a", "x"])]) == "steps[1].depends_on[1]: unknown step 'x'"


def test_self_dependency():
    assert steps_error([step("a"), step("b", depends_on=["b"])]) == "steps[1].depends_on[0]: step 'b' depends on itself"


def test_duplicate_dependency():
    message = steps_error([step("a"), step("b", depends_on=["a", "a"])])
    assert message == "steps[1].depends_on[1]: duplicate dependency 'a'"


def test_two_step_cycle_is_named():
    message = steps_error([step("a", depends_on=["b"]), step("b", depends_on=["a"])])
    assert message == "steps[0].depends_on[0]: dependency cycle a -> b -> a"


def test_longer_cycle_reached_through_a_tail_starts_at_its_first_declared_step():
    data = [
        step("start", depends_on=["z"]),
        step("x", depends_on=["root", "y"]),
        step("root"),
        step("y", depends_on=["z"]),
        step("z", depends_on=["x"]),
    ]
    assert steps_error(data) == "steps[1].depends_on[1]: dependency cycle x -> y -> z -> x"


def test_levels_order_and_ancestors_of_a_diamond():
    spec = parse_steps(
        [
            step("notify", depends_on=["left", "right"]),
            step("left", depends_on=["fetch"]),
            step("fetch"),
            step("right", depends_on=["fetch"]),
            step("audit"),
            step("tail", depends_on=["notify", "audit"]),
        ]
    )
    assert spec.levels() == (("fetch", "audit"), ("left", "right"), ("notify",), ("tail",))
    assert spec.order() == ("fetch", "audit", "left", "right", "notify", "tail")
    assert spec.ancestors("notify") == {"left", "right", "fetch"}
    assert spec.ancestors("tail") == {"left", "right", "fetch", "notify", "audit"}
    assert spec.ancestors("fetch") == frozenset()
    assert spec.ids == ("notify", "left", "fetch", "right", "audit", "tail")
    assert spec.get("right").depends_on == ("fetch",)
    assert spec.get("nope") is None
    assert len(spec) == 6


def test_a_long_chain_does_not_hit_the_recursion_limit():
    data = [step("s0")] + [step(f"s{i}", depends_on=[f"s{i - 1}"]) for i in range(1, MAX_STEPS)]
    spec = parse_steps(list(reversed(data)))
    assert spec.order() == tuple(f"s{i}" for i in range(MAX_STEPS))
    cyclic = [step("s0", depends_on=[f"s{MAX_STEPS - 1}"]), *data[1:]]
    assert "dependency cycle s0 -> s499 -> s498" in steps_error(cyclic)


@st.composite
def dags(draw):
    n = draw(st.integers(min_value=1, max_value=12))
    names = [f"n{i}" for i in range(n)]
    out = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        out.append(step(name, depends_on=deps))
    return draw(st.permutations(out))


@given(dags())
def test_property_order_puts_every_step_after_its_dependencies(data):
    spec = parse_steps(data)
    position = {name: i for i, name in enumerate(spec.order())}
    assert sorted(position) == sorted(s["id"] for s in data)
    level_of = {name: n for n, level in enumerate(spec.levels()) for name in level}
    for s in data:
        for dep in s["depends_on"]:
            assert position[dep] < position[s["id"]]
            assert level_of[dep] < level_of[s["id"]]
            assert dep in spec.ancestors(s["id"])


# --- rules and templates are checked at save time -------------------------------------------------


def test_when_rule_is_validated_and_its_error_path_mapped():
    message = steps_error([step("a"), step("b", when={"and": [{"foo": [1]}]})])
    assert message == "steps[1].when.and[0].foo: unknown operator 'foo'"


def test_when_rule_must_be_json():
    message = steps_error([step("a", when={"==": [1, {2}]})])
    assert message == "steps[0].when.==[1]: value of type set is not a JSON value"


def test_when_null_means_always():
    assert parse_steps([step("a", when=None)])[0].when is None


def test_expr_in_config_is_validated_with_its_path():
    message = steps_error([step("a", config={"total": {"$expr": {"+": [1, {"bogus": []}]}}})])
    assert message == "steps[0].config.total.$expr.+[1].bogus: unknown operator 'bogus'"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"text": "hi {{ run.id"}, "steps[0].config.text: unclosed '{{'"),
        ({"l": ["{{ a..b }}"]}, "steps[0].config.l[0]: invalid template '{{ a..b }}'"),
        ({"v": {"$expr": 1, "x": 2}}, "steps[0].config.v: '$expr' must be the only key of its object"),
    ],
)
def test_malformed_templates_are_rejected_at_save_time(config, expected):
    assert steps_error([step("a", config=config)]).startswith(expected)


def test_a_step_may_only_read_outputs_of_steps_it_depends_on():
    ok = parse_steps(
        [
            step("fetch"),
            step("shape", depends_on=["fetch"]),
            step(
                "send", config={"a": "{{ steps.fetch.output.x }}", "b": "{{ event.payload.y }}"}, depends_on=["shape"]
            ),
        ]
    )
    assert ok.get("send").config["a"] == "{{ steps.fetch.output.x }}"

    message = steps_error([step("fetch"), step("send", config={"body": {"x": "{{ steps.fetch.output.x }}"}})])
    assert message == (
        "steps[1].config.body.x: template path 'steps.fetch.output.x' refers to step 'fetch', "
        "which this step does not depend on (add it to depends_on)"
    )


def test_step_references_in_expr_and_when_are_checked_too():
    message = steps_error([step("fetch"), step("send", config={"n": {"$expr": {"var": "steps.fetch.output.n"}}})])
    assert message.startswith("steps[1].config.n.$expr: template path 'steps.fetch.output.n' refers to step 'fetch'")
    message = steps_error([step("fetch"), step("send", when={"var": ["steps.fetch.output.ok", False]})])
    assert message.startswith("steps[1].when: template path 'steps.fetch.output.ok' refers to step 'fetch'")
    message = steps_error([step("send", config={"x": "{{ steps.send.output }}"})])
    assert message == "steps[0].config.x: template path 'steps.send.output' refers to this step's own output"
    message = steps_error(
        [step("fetch"), step("send", config={"x": "{{ steps.fetchh.output }}"}, depends_on=["fetch"])]
    )
    assert message == "steps[1].config.x: template path 'steps.fetchh.output' refers to unknown step 'fetchh'"
    message = steps_error([step("send", config={"x": "{{ steps }}"})])
    assert message.startswith("steps[0].config.x: template path 'steps' must name a step")


# --- trigger -------------------------------------------------------------------------------------


def test_trigger_with_one_type_round_trips_as_a_string():
    spec = parse_trigger_spec({"event": "order.created"})
    assert spec.event == ("order.created",)
    assert spec.rule is None
    assert spec.model_dump(mode="json") == {"event": "order.created", "rule": None}
    assert parse_trigger_spec(spec.model_dump(mode="json")) == spec


def test_trigger_with_a_list_and_a_rule_round_trips():
    data = {"event": ["order.*", "invoice.paid"], "rule": {">": [{"var": "payload.total"}, 100]}}
    spec = parse_trigger_spec(data)
    assert spec.model_dump(mode="json") == data
    assert parse_trigger_spec(json.loads(spec.model_dump_json())) == spec


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        ("order.created", "order.created", True),
        ("order.created", "order.created.v2", False),
        ("order.created", "Order.created", False),
        ("order.*", "order.created", True),
        ("order.*", "order.line.added", True),
        ("order.*", "order.", True),
        ("order.*", "orders.created", False),
        ("order.*", "order", False),
        ("*", "anything.at.all", True),
        ("*.created", "user.created", True),
        ("order.?", "order.a", True),
        ("order.?", "order.ab", False),
        ("a.b", "aXb", False),
        ("a+b", "aab", False),
        (["invoice.paid", "order.*"], "invoice.paid", True),
        (["invoice.paid", "order.*"], "order.x", True),
        (["invoice.paid", "order.*"], "invoice.void", False),
    ],
)
def test_matches_type(patterns, event_type, expected):
    assert parse_trigger_spec({"event": patterns}).matches_type(event_type) is expected


def test_matches_checks_the_type_then_the_rule():
    spec = parse_trigger_spec({"event": "order.*", "rule": {">": [{"var": "payload.total"}, 100]}})
    assert spec.matches("order.created", {"payload": {"total": 150}}) is True
    assert spec.matches("order.created", {"payload": {"total": 50}}) is False
    assert spec.matches("invoice.paid", {"payload": {"total": 150}}) is False
    assert parse_trigger_spec({"event": "x"}).matches("x", {}) is True


def test_trigger_is_frozen():
    spec = parse_trigger_spec({"event": "x"})
    with pytest.raises(ValidationError):
        spec.event = ("y",)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "trigger.event: required"),
        ({"event": []}, "trigger.event: must list 1 to 100 event types"),
        ({"event": [5]}, "trigger.event[0]: must be a string"),
        ({"event": ""}, "trigger.event[0]: must be 1-200 characters without whitespace"),
        ({"event": ["ok", "has space"]}, "trigger.event[1]: must be 1-200 characters without whitespace"),
        (
            {"event": ["ok", "order.[ab]"]},
            "trigger.event[1]: must be 1-200 characters without whitespace; the only wildcards are * and ?",
        ),
        ({"event": ["ok", 5]}, "trigger.event[1]: must be a string"),
        ({"event": 5}, "trigger.event: must be an event type or a list of them"),
        ({"event": "x" * 201}, "trigger.event[0]: must be 1-200 characters"),
        ({"event": "x", "filter": {}}, "trigger.filter: unknown field"),
        ({"event": "x", "rule": {"and": [{"foo": 1}]}}, "trigger.rule.and[0].foo: unknown operator 'foo'"),
        ({"event": "x", "rule": {"==": [1, float("nan")]}}, "trigger.rule.==[1]: numbers must be finite"),
        ("order.created", "trigger: must be a JSON object"),
    ],
)
def test_bad_trigger_names_the_path(data, expected):
    assert trigger_error(data).startswith(expected)


def test_trigger_pattern_count_is_bounded():
    assert trigger_error({"event": [f"e{i}" for i in range(101)]}).startswith(
        "trigger.event: must list 1 to 100 event types"
    )


# --- whole workflow ------------------------------------------------------------------------------

EXAMPLE = {
    "trigger": {"event": ["order.paid"], "rule": {">=": [{"var": "payload.total"}, 100]}},
    "steps": [
        step("fetch", config={"url": "https://erp/{{ event.payload.order_id }}", "token": "$secret:ERP_TOKEN"}),
        step("notify", "slack", config={"text": "{{ steps.fetch.output.body.customer }}"}, depends_on=["fetch"]),
    ],
}


def test_workflow_round_trips_and_exposes_both_parts():
    spec = parse_workflow(EXAMPLE)
    assert isinstance(spec.steps, StepsSpec)
    assert isinstance(spec.trigger, TriggerSpec)
    assert spec.steps.order() == ("fetch", "notify")
    dumped = spec.model_dump(mode="json")
    assert dumped["trigger"] == {"event": "order.paid", "rule": EXAMPLE["trigger"]["rule"]}
    assert parse_workflow(dumped) == spec
    assert WorkflowSpec.model_validate_json(spec.model_dump_json()) == spec
    assert parse_trigger_spec(dumped["trigger"]) == spec.trigger
    assert parse_steps(dumped["steps"]) == spec.steps


def test_workflow_errors_are_prefixed_by_their_part():
    bad = {**EXAMPLE, "trigger": {"event": "x", "rule": {"nope": 1}}, "steps": [step("a", depends_on=["zz"])]}
    with pytest.raises(SpecError) as info:
        parse_workflow(bad)
    assert [path for path, _ in info.value.problems] == ["trigger.rule.nope", "steps[0].depends_on[0]"]
    with pytest.raises(SpecError, match=r"^steps\[0\]\.depends_on\[0\]: unknown step 'zz'$"):
        parse_workflow({**EXAMPLE, "steps": [step("a", depends_on=["zz"])]})
    with pytest.raises(SpecError, match=r"^steps: required; extra: unknown field$"):
        parse_workflow({"trigger": {"event": "x"}, "extra": 1})
    with pytest.raises(SpecError, match=r"^\$: must be a JSON object$"):
        parse_workflow([])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"output": "a\x00b"}, "steps[0].config.output: text contains a NUL character"),
        ({"output": {"k\x00": 1}}, "steps[0].config.output: text contains a NUL character"),
        ({"output": ["x", "\ud800"]}, "steps[0].config.output[1]: text contains a lone surrogate"),
    ],
)
def test_text_postgresql_cannot_store_is_refused_with_its_path(config, message):
    with pytest.raises(SpecError) as info:
        parse_steps([{"id": "t", "type": "transform", "config": config}])
    assert message in str(info.value)


def test_a_rule_with_a_nul_is_refused_with_its_path():
    with pytest.raises(SpecError, match=r"trigger\.rule.*NUL"):
        parse_trigger_spec({"event": "x", "rule": {"==": [{"var": "a"}, "\x00"]}})
