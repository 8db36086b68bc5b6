"""The policy file: what is accepted, and how each kind of mistake is reported."""

import copy
import json
from pathlib import Path

import pytest

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
        (good(interval=0), ["interval", "greater than 0"]),
        (good(lifetime="30s"), ["lifetime must be at least one interval"]),
        (good(on_undecided="maybe"), ["on_undecided", "maybe"]),
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

