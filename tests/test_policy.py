"""The policy file: what is accepted, and how each kind of mistake is reported."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from gate.demo import demo_policy
from gate.errors import PolicyError
from gate.policy import json_schema, load_policy, parse_duration, parse_policy
from tests.conftest import ROOT, run_gate

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

GOOD = {
    "name": "web",
    "source": {"type": "simulate", "options": {"scenario": "healthy"}},
    "canary": {"scope": "canary"},
    "baseline": {"scope": "baseline"},
    "interval": "1m",
    "lifetime": "1h",
    "metrics": [
        {"name": "latency", "kind": "gauge", "tolerance": 0.1},
        {"name": "errors", "kind": "count", "denominator": "requests", "tolerance": 0.5},
        {"name": "requests", "kind": "count", "bad_direction": "none"},
    ],
}


def good(**changes) -> dict:
    data = copy.deepcopy(GOOD)
    data.update(changes)
    return data


def error_of(data) -> str:
    with pytest.raises(PolicyError) as raised:
        parse_policy(data)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_the_examples_are_valid_policies():
    assert {p.name for p in EXAMPLES} >= {"replay.yaml", "simulate.yaml"}
    for path in EXAMPLES:
        policy = load_policy(path)
        assert policy.metrics and any(m.judged for m in policy.metrics)


def test_the_simulate_example_is_the_demo_policy():
    example = load_policy(ROOT / "examples" / "simulate.yaml")
    assert example == demo_policy(example.source.options["scenario"], example.source.options["seed"])


def test_a_good_policy_gets_its_defaults_and_its_durations_in_seconds():
    policy = parse_policy(good())
    assert (policy.interval, policy.lifetime, policy.history) == (60, 3600, 7 * 86400)
    assert policy.on_undecided == "fail"  # fail-closed by default
    assert policy.metric("errors").denominator == "requests"
    assert not policy.metric("requests").judged
    assert not policy.history_only
    assert parse_policy(good(baseline=None)).history_only


@pytest.mark.parametrize(
    "text, seconds",
    [(90, 90), ("90", 90), ("30s", 30), ("5m", 300), (" 2h ", 7200), ("7d", 604800), ("2w", 1209600)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "1.5h", "-1m", "", True, 1.5, None, "m"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "data, names",
    [
        (good(interval="5 minutes"), ["interval", "5 minutes"]),
        (good(interval=0), ["interval", "between 10s and 1d"]),
        (good(lifetime="30s"), ["lifetime must be at least one interval"]),
        (good(on_undecided="maybe"), ["on_undecided", "maybe"]),
        (good(on_undecided="pass"), ["on_undecided", "could not judge"]),  # fail-closed, always
        (good(alpha=0.7), ["alpha", "0.7"]),
        (good(name="web service!"), ["name", "web service!"]),
        (good(colour="blue"), ["colour", "Extra inputs are not permitted"]),
        (good(source={"type": "prometheus"}), ["source.type", "prometheus"]),
        (good(canary={"scope": ""}), ["canary.scope"]),
        (good(metrics=[]), ["metrics", "at least 1"]),
        (good(metrics=[{"name": "cpu", "kind": "gaug"}]), ["metrics.0.kind", "gaug"]),
        (good(metrics=[{"name": "cpu", "kind": "gauge", "tolerance": -0.1}]), ["metrics.0.tolerance", "-0.1"]),
        (good(metrics=[{"name": "cpu", "kind": "gauge", "bad_direction": "up"}]), ["metrics.0.bad_direction", "up"]),
        (good(metrics=[{"name": "cpu", "kind": "gauge", "critcal": True}]), ["metrics.0.critcal"]),
        (good(metrics=[{"kind": "gauge"}]), ["metrics.0.name", "Field required"]),
        (good(metrics=[{"name": "cpu", "kind": "gauge", "bad_direction": "none"}]), ["no metric is judged"]),
    ],
)
def test_each_bad_field_is_named_in_one_line(data, names):
    message = error_of(data)
    for name in names:
        assert name in message


def test_duplicate_metric_names_are_named():
    metrics = GOOD["metrics"] + [{"name": "latency", "kind": "gauge"}]
    assert "repeated: latency" in error_of(good(metrics=metrics))


@pytest.mark.parametrize(
    "metrics, expected",
    [
        ([{"name": "errors", "kind": "count", "denominator": "calls"}], "denominator 'calls' is not a metric"),
        ([{"name": "errors", "kind": "count", "denominator": "latency"}, {"name": "latency", "kind": "gauge"}],
         "denominator 'latency' must be a count"),
        ([{"name": "latency", "kind": "gauge", "denominator": "requests"}, {"name": "requests", "kind": "count"}],
         "only a count can have a denominator"),
    ],
)
def test_a_bad_denominator_is_explained(metrics, expected):
    message = error_of(good(metrics=metrics))
    assert expected in message


def test_a_policy_that_is_not_a_mapping_is_refused():
    assert "a policy is a mapping" in error_of(["name", "web"])


def test_a_yaml_syntax_error_gives_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: web\nsource:\n  type: simulate\n  options: {scenario: healthy\ncanary: x\n")
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    message = str(raised.value)
    assert str(path) in message and "line " in message and "\n" not in message


def test_a_missing_policy_file_is_named(tmp_path):
    with pytest.raises(PolicyError, match="policy file not found: .*nope.yaml"):
        load_policy(tmp_path / "nope.yaml")


def test_the_json_schema_is_valid_json_and_describes_the_policy():
    schema = json.loads(json_schema())
    assert schema["title"] == "canary-gate policy"
    assert {"name", "source", "canary", "metrics"} <= set(schema["required"])
    assert "interval" in schema["properties"]
    assert "Metric" in schema["$defs"]


def test_cli_policy_schema_prints_the_schema():
    result = run_gate("policy", "schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads(json_schema())


def test_cli_policy_validate(tmp_path):
    result = run_gate("policy", "validate", *EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert all(f"{p}: ok" in result.stdout.replace("\n", "") for p in EXAMPLES)

    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(ROOT / "examples" / "simulate.yaml").read_text().replace("kind: gauge", "kind: gague", 1))
    result = run_gate("policy", "validate", bad)
    assert result.returncode == 4
    assert "metrics.0.kind" in result.stderr and "gague" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_policy_validate_checks_the_source_queries(tmp_path):
    """A query the Datadog source would refuse is caught by validate, before any deploy."""
    bad = tmp_path / "datadog.yaml"
    bad.write_text((ROOT / "examples" / "datadog.yaml").read_text().replace(
        'datadog: "avg:system.cpu.user{$scope}"', 'datadog: "avg:system.cpu.user{*}"', 1))
    assert bad.read_text() != (ROOT / "examples" / "datadog.yaml").read_text()
    result = run_gate("policy", "validate", bad, env={"DD_API_KEY": "", "DD_APP_KEY": ""})
    assert result.returncode == 4, result.stdout
    assert "queries.datadog" in result.stderr and "$scope" in result.stderr
    assert "Traceback" not in result.stderr



# -- numbers must be finite and sane: an infinite tolerance would pass any regression -------------

def metric(**fields) -> dict:
    return good(metrics=[{"name": "latency", "kind": "gauge", **fields}])


@pytest.mark.parametrize(
    "data, names",
    [
        (metric(tolerance=float("inf")), ["metrics.0.tolerance", "finite"]),
        (metric(tolerance=float("nan")), ["metrics.0.tolerance", "finite"]),
        (metric(tolerance=1e308), ["metrics.0.tolerance", "less than or equal to 100"]),
        (metric(tolerance=101), ["metrics.0.tolerance", "100"]),
        (metric(min_events=10**15), ["metrics.0.min_events"]),
        (good(alpha=float("inf")), ["alpha", "finite"]),
        (good(alpha=float("nan")), ["alpha", "finite"]),
        (good(alpha=0), ["alpha"]),
        (good(alpha=0.51), ["alpha", "0.5"]),
        (good(pass_risk=float("nan")), ["pass_risk", "finite"]),
        (good(pass_risk=0.9), ["pass_risk", "0.5"]),
        (good(interval=5), ["interval", "between 10s and 1d"]),
        (good(interval="2d"), ["interval", "between 10s and 1d"]),
        (good(interval=float("inf")), ["interval", "finite"]),
        (good(interval=1e400), ["interval", "finite"]),
        (good(lifetime="8d"), ["lifetime", "between 10s and 7d"]),
        (good(lifetime="99999999999999999999w"), ["lifetime", "between"]),
        (good(history=float("nan")), ["history", "finite"]),
        (good(history="400d"), ["history", "366d"]),
        (good(min_duration=-1), ["min_duration"]),
    ],
)
def test_infinite_or_absurd_numbers_are_refused_naming_the_field(data, names):
    message = error_of(data)
    for name in names:
        assert name in message, message


def test_the_bounds_themselves_are_accepted():
    policy = parse_policy(good(interval="10s", lifetime="7d", alpha=0.5, pass_risk=0.5,
                               metrics=[{"name": "latency", "kind": "gauge", "tolerance": 100}]))
    assert (policy.interval, policy.lifetime, policy.metrics[0].tolerance) == (10, 7 * 86400, 100)


@pytest.mark.parametrize("tolerance", [".inf", "1e308", ".nan"])
def test_gate_policy_validate_refuses_an_infinite_tolerance(tmp_path, tolerance):
    text = (ROOT / "examples" / "simulate.yaml").read_text().replace("tolerance: 0.10", f"tolerance: {tolerance}", 1)
    path = tmp_path / "inf.yaml"
    path.write_text(text)
    result = run_gate("policy", "validate", path)
    assert result.returncode == 4, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "metrics.0.tolerance" in lines[0] and "Traceback" not in result.stderr


def test_an_infinite_tolerance_cannot_pass_a_real_regression(tmp_path):
    """The audit's case: `tolerance: .inf` on a failing canary must be refused, not passed."""
    import time

    deployed = (int(time.time()) // 60 - 90) * 60
    text = (ROOT / "examples" / "simulate.yaml").read_text().replace("scenario: db_connections", "scenario: bad_version")
    path = tmp_path / "inf.yaml"
    path.write_text(text.replace("tolerance: 0.10", "tolerance: .inf"))
    result = run_gate("check", "rel", "--policy", path, "--deployed-at", str(deployed),
                      "--store", tmp_path / "gate.sqlite", "--json")
    assert result.returncode == 4 and result.stdout == "", result.stdout
    assert "tolerance" in result.stderr


# -- the published JSON Schema: standard keywords, and it accepts every shipped example -----------

STANDARD_KEYWORDS = {
    "$schema", "$defs", "$ref", "title", "description", "default", "type", "properties", "required",
    "additionalProperties", "items", "anyOf", "oneOf", "allOf", "enum", "const", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "examples", "readOnly", "writeOnly", "deprecated", "format", "uniqueItems", "multipleOf",
}


def _keywords(node, found):
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    _keywords(sub, found)
            elif key != "default" and key != "examples" and key != "enum":
                _keywords(value, found)
    elif isinstance(node, list):
        for item in node:
            _keywords(item, found)
    return found


def test_the_json_schema_uses_standard_keywords_only():
    found = _keywords(json.loads(json_schema()), set())
    assert found <= STANDARD_KEYWORDS, found - STANDARD_KEYWORDS


def test_every_example_validates_against_the_json_schema():
    import yaml

    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(json_schema())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in EXAMPLES:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], (path.name, errors)


def test_the_json_schema_refuses_what_the_policy_refuses():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(json_schema()))
    assert validator.is_valid(good())
    for bad in (good(interval="5 minutes"), good(interval=5), good(lifetime="1x"), metric(tolerance=1e308),
                good(alpha=0.7)):
        assert not validator.is_valid(bad), bad


def test_policy_validate_names_the_source_option_at_fault(tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text((ROOT / "examples" / "simulate.yaml").read_text().replace(
        "scenario: db_connections", "scenario: meteor_strike"))
    case = tmp_path / "case.yaml"
    case.write_text((ROOT / "examples" / "replay.yaml").read_text().replace(
        "case: cases/k1m-aa-000", f"case: {tmp_path / 'gone'}"))
    for path, field, words in ((scenario, "source.options.scenario", ["meteor_strike", "healthy"]),
                               (case, "source.options.case", ["case folder not found"])):
        result = run_gate("policy", "validate", path)
        assert result.returncode == 4, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr
        assert lines[0].startswith(f"error: {path}: {field}: "), lines[0]
        assert all(w in lines[0] for w in words), lines[0]


# -- policies built to exhaust the gate (issue 15) ----------------------------------------------

BOMB = """
name: web
source: {type: simulate, options: {scenario: healthy}}
canary: {scope: canary}
baseline: {scope: baseline}
metrics:
  - name: cpu
    kind: gauge
    queries:
      cloudwatch:
        a: &a [x, x, x, x, x, x, x, x, x, x]
        b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
        d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
        e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
        f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
        g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
        h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
        i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_a_yaml_alias_bomb_is_refused_at_load_and_by_policy_validate(tmp_path):
    """A few lines that expand to 10^9 values when the policy is serialised (`gate check` hashes
    `model_dump_json()` for its cache key): refused, measured without being expanded."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    with pytest.raises(PolicyError, match="more than 100000 values once its YAML aliases are expanded"):
        load_policy(path)
    result = run_gate("policy", "validate", path, timeout=60)
    assert result.returncode == 4 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "alias" in result.stderr


def test_aliases_within_the_bound_are_fine(tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text(BOMB.split("        d:")[0])  # 10 + 100 + 1000 values, shared
    assert load_policy(path).metrics[0].queries["cloudwatch"]["c"][9][9] == ["x"] * 10


@pytest.mark.parametrize("text, message", [
    ("a: " + "[" * 20_000 + "]" * 20_000, "nested more than 32 levels deep at line 1, column 35"),
    ("a: &a [*a]", "the policy contains itself"),
])
def test_deep_or_self_containing_yaml_is_one_line_not_a_recursion_error(tmp_path, text, message):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        load_policy(path)


def test_nesting_through_aliases_is_bounded_too():
    data = good()
    deep: list = ["x"]
    for _ in range(40):
        deep = [deep]
    data["metrics"][0]["queries"] = {"cloudwatch": deep}
    assert "nested more than 32 levels deep once its YAML aliases are expanded" in error_of(data)


def test_a_policy_file_larger_than_the_cap_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(json.dumps(GOOD) + "\n#" + "x" * 1_100_000 + "\n")
    with pytest.raises(PolicyError, match=r"huge.yaml: larger than 1000 KB"):
        load_policy(path)


def test_a_huge_field_is_quoted_short_in_the_error():
    message = error_of(good(name="x" * 10_000_000))
    assert len(message) < 600
    assert "name: String should match pattern" in message and "(10000002 characters)" in message


# -- the vocabulary of what is not a source: actions and notify (issue 14) ----------------------

DATADOG = {**GOOD, "source": {"type": "datadog", "options": {"timeout": 5}}}


def test_actions_and_notify_are_typed_sections_of_the_policy_and_its_json_schema():
    schema = json.loads(json_schema())
    assert {"actions", "notify"} <= set(schema["properties"])
    assert {"production_asg", "strategy", "checkpoints", "checkpoint_delay"} <= set(schema["$defs"]["Actions"]["properties"])
    assert "datadog_event" in schema["$defs"]["Notify"]["properties"]
    policy = parse_policy(good(actions={"production_asg": "web-prod", "checkpoint_delay": "5m"}))
    assert policy.actions.production_asg == "web-prod" and policy.actions.checkpoint_delay == 300
    assert policy.actions.strategy == "refresh" and policy.actions.checkpoints == (20, 50, 100)
    assert "actions.strategy" in error_of(good(actions={"strategy": "yolo"}))
    assert "actions.checkpoints: increasing percentages ending at 100" in error_of(good(actions={"checkpoints": [50, 20]}))
    assert "actions.bogus" in error_of(good(actions={"bogus": 1}))
    assert "notify.datadog_event" in error_of(good(notify={"datadog_event": True}))  # a simulate source


def test_keys_moved_out_of_source_options_are_read_with_a_warning_naming_the_new_field(monkeypatch, caplog):
    monkeypatch.setattr("gate.policy._warned", set())
    old = {**DATADOG, "source": {"type": "datadog", "options": {"timeout": 5, "production_asg": "web-prod",
                                                                   "events": True}}}
    with caplog.at_level("WARNING", logger="gate.policy"):
        policy = parse_policy(old)
        parse_policy(old)
    assert policy.actions.production_asg == "web-prod" and policy.notify.datadog_event is True
    assert policy.source.options == {"timeout": 5}
    warnings = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(warnings) == 2  # once per key and process, not per parse
    assert any("source.options.production_asg" in w and "actions.production_asg" in w for w in warnings)
    assert any("source.options.events" in w and "notify.datadog_event" in w for w in warnings)
    both = {**old, "actions": {"production_asg": "web-other"}}
    assert "keep actions.production_asg only" in error_of(both)


def test_gate_policy_validate_says_on_stderr_which_field_replaces_an_old_key(tmp_path):
    import yaml

    data = yaml.safe_load((ROOT / "examples" / "cloudwatch.yaml").read_text())
    data["source"]["options"]["production_asg"] = data.pop("actions")["production_asg"]
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(data))
    result = run_gate("policy", "validate", tmp_path / "old.yaml")
    assert result.returncode == 0, result.stderr
    assert "source.options.production_asg is deprecated, use actions.production_asg" in result.stderr


def test_scopes_are_the_given_ones_else_the_policy_s_with_the_release_filled():
    policy = parse_policy(good(canary={"scope": "version:{release}"}))
    assert policy.scopes() == ("version:{release}", "baseline")
    assert policy.scopes("web-2") == ("version:web-2", "baseline")
    assert policy.scopes("web-2", canary="c-{release}", baseline="b") == ("c-web-2", "b")
    assert parse_policy(good(baseline=None)).scopes("web-2") == ("canary", None)


# -- guardrails (SLOs): max / min in the metric's unit, slo burn rate (issue 16) ------------------

def errors_with(**fields) -> dict:
    return good(metrics=[{"name": "errors", "kind": "count", "denominator": "requests", **fields},
                         {"name": "requests", "kind": "count", "bad_direction": "none"}])


@pytest.mark.parametrize(
    "data, words",
    [
        (metric(max=800, min=900), ["metrics.0", "'latency'", "min (900) must be below max (800)"]),
        (metric(max=800, min=800), ["min (800) must be below max (800)"]),
        (metric(max=float("inf")), ["metrics.0.max", "finite"]),
        (metric(min="fast"), ["metrics.0.min", "number", "'fast'"]),
        (metric(max=1e300), ["metrics.0.max", "less than or equal to 1000000000000000"]),
        (metric(bad_direction="none", max=800), ["'latency'", "guardrail (max)", "bad_direction none"]),
        (errors_with(max=-0.01), ["'errors'", "never below 0", "max -0.01"]),
        (errors_with(slo={"objective": 1}), ["metrics.0.slo.objective", "less than 1"]),
        (errors_with(slo={"objective": 0}), ["metrics.0.slo.objective", "greater than 0"]),
        (errors_with(slo={"objective": 1.5}), ["metrics.0.slo.objective", "1.5"]),
        (errors_with(slo={"objective": float("nan")}), ["metrics.0.slo.objective", "finite"]),
        (errors_with(slo={}), ["metrics.0.slo.objective", "required"]),
        (errors_with(slo={"objective": 0.999, "burn_rate": 0.5}), ["metrics.0.slo.burn_rate", "1"]),
        (errors_with(slo={"objective": 0.9, "burn_rate": 14.4}), ["metrics.0.slo", "1.44", "below 1"]),
        (errors_with(slo={"objective": 0.999, "fast": True}), ["metrics.0.slo.fast", "not permitted"]),
        (metric(slo={"objective": 0.999}), ["'latency'", "only for a count with a denominator"]),
        (errors_with(bad_direction="decrease", slo={"objective": 0.999}), ["'errors'", "must be increase"]),
    ],
)
def test_bad_guardrails_are_refused_naming_the_field(data, words):
    message = error_of(data)
    for word in words:
        assert word in message, message


def test_guardrails_are_accepted_with_their_defaults():
    policy = parse_policy(good(metrics=[
        {"name": "latency", "kind": "gauge", "unit": "ms", "max": 800, "min": 5},
        {"name": "errors", "kind": "count", "denominator": "requests", "max": 0.01, "slo": {"objective": 0.999}},
        {"name": "requests", "kind": "count", "bad_direction": "none"}]))
    latency, errors, requests = policy.metrics
    assert (latency.max, latency.min, latency.slo) == (800, 5, None)
    assert errors.slo.burn_rate == 14.4 and errors.slo.threshold == pytest.approx(0.0144)
    assert requests.max is None and requests.slo is None


def test_the_json_schema_describes_and_bounds_the_guardrails():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(json_schema())
    assert {"max", "min", "slo"} <= set(schema["$defs"]["Metric"]["properties"])
    assert "objective" in schema["$defs"]["Slo"]["required"]
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(errors_with(max=0.01, slo={"objective": 0.999, "burn_rate": 6}))
    for bad in (errors_with(slo={"objective": 1.5}), errors_with(slo={"objective": 0}),
                errors_with(slo={"objective": 0.999, "burn_rate": 0.5}), metric(max="800ms"), metric(min=1e300)):
        assert not validator.is_valid(bad), bad


def test_gate_policy_validate_names_a_bad_guardrail_in_one_line(tmp_path):
    path = tmp_path / "slo.yaml"
    path.write_text((ROOT / "examples" / "simulate.yaml").read_text().replace(
        "    critical: true", "    critical: true\n    max: 250\n    min: 300", 1))
    result = run_gate("policy", "validate", path)
    assert result.returncode == 4 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: metrics.2: metric 'latency': min (300) must be below max (250)"), line


@pytest.mark.parametrize("guardrail", ["    max: 250", "    min: 5"], ids=["max", "min"])
def test_a_guardrail_on_a_muted_metric_is_refused_naming_the_way_out(tmp_path, guardrail):
    """Issue 22.6: `muted: true` with `max` was accepted, and a muted result never votes: a canary
    at 3x its latency limit passed. A guardrail is a hard limit: the combination is refused."""
    path = tmp_path / "muted.yaml"
    path.write_text((ROOT / "examples" / "simulate.yaml").read_text().replace(
        "    critical: true", f"    critical: true\n    muted: true\n{guardrail}", 1))
    result = run_gate("policy", "validate", path)
    assert result.returncode == 4 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    named = guardrail.split(":")[0].strip()
    assert f"metric 'latency': a guardrail ({named}) is a hard limit, but muted: true" in line, line
    assert f"remove muted to let the limit fail it, or remove {named}" in line, line


def test_a_muted_error_budget_is_refused_too():
    message = error_of(errors_with(muted=True, slo={"objective": 0.999}))
    assert "'errors'" in message and "guardrail (slo)" in message and "remove muted" in message, message


@pytest.mark.parametrize("where", ["latency", "errors"])
def test_a_zero_tolerance_on_a_judged_metric_is_refused_naming_it(where):
    """Issue 23's review: at tolerance 0 the end of the lifetime passed a canary +27% worse (only
    the significance test judged it). No evidence shows a canary within 0: refused."""
    data = good()
    next(m for m in data["metrics"] if m["name"] == where)["tolerance"] = 0
    message = error_of(data)
    assert f"metric {where!r}" in message and "tolerance 0" in message and "e.g. 0.05" in message


def test_a_tolerance_next_to_zero_is_refused_as_zero_is():
    data = good()
    data["metrics"][0]["tolerance"] = 1e-300
    message = error_of(data)
    assert "metric 'latency'" in message and "tolerance 1e-300 is below 0.001" in message
    data["metrics"][0]["tolerance"] = 0.001
    assert parse_policy(data).metric("latency").tolerance == 0.001


def test_a_zero_tolerance_is_fine_where_nothing_is_judged():
    data = good()
    data["metrics"] += [{"name": "context", "kind": "gauge", "bad_direction": "none", "tolerance": 0},
                        {"name": "shown", "kind": "gauge", "muted": True, "tolerance": 0}]
    assert parse_policy(data).metric("context").tolerance == 0


def test_a_null_tolerance_beside_a_baseline_is_refused_naming_the_metric():
    """Issue 23's review: with tolerance null a canary beside its baseline passed at any look when
    not shown different (a 3x error rate at a 0.2% share passed at half its lifetime)."""
    data = good()
    data["metrics"][1]["tolerance"] = None
    message = error_of(data)
    assert "metric 'errors'" in message and "tolerance null" in message and "without a baseline group" in message
    history_only = good()
    del history_only["baseline"]
    history_only["metrics"][1]["tolerance"] = None
    assert parse_policy(history_only).metric("errors").tolerance is None  # a departure from the history


def test_gate_check_refuses_a_zero_tolerance_in_one_line_and_never_passes(tmp_path):
    data = good()
    data["metrics"][0]["tolerance"] = 0
    path = tmp_path / "zero.yaml"
    path.write_text(json.dumps(data))
    result = run_gate("check", "rel-1", "--policy", path)
    assert result.returncode not in (0, 1), result.stdout + result.stderr
    assert "tolerance 0" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("path", "value"), [
    (("metrics", 0, "tolerance"), "yes"), (("metrics", 0, "tolerance"), "true"),
    (("metrics", 0, "min_events"), "on"), (("alpha",), "true"), (("pass_risk",), "false"),
])
def test_a_yaml_bool_where_a_number_belongs_is_refused_naming_the_field(tmp_path, path, value):
    """Review: YAML reads `yes`, `on`, `true` as bools and pydantic took a bool for a number:
    `tolerance: yes` was a tolerance of 100%, passing nearly any canary."""
    data = good()
    where = data
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = yaml.safe_load(value)
    message = error_of(data)
    assert ".".join(map(str, path)) in message and "expected a number, not a bool" in message, message


@pytest.mark.parametrize("direction", ["decrease", "either"])
def test_a_tolerance_of_a_fall_of_100_percent_or_more_is_refused(direction):
    """Review: a count with `bad_direction: decrease, tolerance: 2.0` was accepted and its prior
    variance went negative in the judge (ValueError: math domain error, a traceback)."""
    data = good()
    data["metrics"][1].update(bad_direction=direction, tolerance=2.0)  # errors, a count
    message = error_of(data)
    assert "metric 'errors': tolerance 2 on a decrease" in message, message
    data["metrics"][0].update(bad_direction=direction, tolerance=2.0)  # a gauge: "any fall is fine"
    data["metrics"][1].update(bad_direction="increase", tolerance=0.5)
    assert parse_policy(data).metrics[0].tolerance == 2.0
